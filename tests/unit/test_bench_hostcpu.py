"""Unit: how bench/ reads the kernel's exit records and names the host's processes (bench 13 and 5)."""

from __future__ import annotations

import struct

from bench.exits import AGROUP, OFF_COMM, OFF_FLAG, OFF_PID, OFF_RUN_VIRTUAL, OFF_UID, TYPE_AGGR_PID, TYPE_AGGR_TGID, \
    TYPE_PID, TYPE_STATS, TYPE_TGID, _attr, ended_of
from bench.hostcpu import FORKSERVER, Proc, Usage, _ended_of, kind_of, sides


def _stats(pid: int, ppid: int, uid: int, comm: str, cpu_ns: int, flag: int) -> bytes:
    raw = bytearray(400)
    raw[OFF_FLAG] = flag
    struct.pack_into("Q", raw, OFF_RUN_VIRTUAL, cpu_ns)
    raw[OFF_COMM:OFF_COMM + len(comm)] = comm.encode()
    struct.pack_into("IIIII", raw, OFF_UID, uid, uid, pid, ppid, 0)
    assert OFF_PID == OFF_UID + 8
    return bytes(raw)


def _exit_message(*parts: tuple[int, int, bytes]) -> bytes:
    body = b"".join(_attr(kind, _attr(id_kind, struct.pack("I", 7)) + _attr(TYPE_STATS, stats))
                    for kind, id_kind, stats in parts)
    return b"\0\0\0\0" + body  # the generic netlink header, then the attributes


def test_a_process_that_ended_is_read_with_its_cpu_and_a_thread_that_ended_is_not():
    single = _exit_message((TYPE_AGGR_PID, TYPE_PID, _stats(42, 7, 1001, "tmux", 3_000_000, AGROUP)))
    got = ended_of(single)
    assert got is not None and (got.pid, got.ppid, got.uid, got.comm, got.cpu_ns) == (42, 7, 1001, "tmux", 3_000_000)
    thread = _exit_message((TYPE_AGGR_PID, TYPE_PID, _stats(43, 7, 1001, "python", 5, 0)))
    assert ended_of(thread) is None


def test_a_threaded_process_costs_the_sum_of_its_threads():
    message = _exit_message((TYPE_AGGR_PID, TYPE_PID, _stats(50, 7, 1001, "python3", 1_000, AGROUP)),
                            (TYPE_AGGR_TGID, TYPE_TGID, _stats(0, 0, 0, "", 9_000, 0)))
    got = ended_of(message)
    assert got is not None and got.cpu_ns == 9_000 and got.comm == "python3"


def test_processes_are_named_by_what_they_run():
    assert kind_of("sshd", "sshd: alice [priv]", 0, 1001) == "sshd: connection (root monitor)"
    assert kind_of("sshd", "sshd: alice@notty", 1001, 1001) == "sshd: user session"
    assert kind_of("python3", "/usr/bin/python3 /home/a/.portal/bin/remote-0123abcd.pyz snapshot-up") == "portal helper"
    assert kind_of("dask", "/e/bin/python /e/bin/dask scheduler --port 0") == "dask scheduler"
    assert kind_of("dask", '/e/bin/python /e/bin/dask spec --spec {"scheduler":{"cls":"distributed.Scheduler","opts":'
                   '{"scheduler_file":"/h/s.json"}},"a":{"cls":"distributed.Nanny"}}') == "dask spec: scheduler and nannies"
    assert kind_of("dask", "/e/bin/python /e/bin/dask worker --nworkers 2") == "dask worker/nanny (main)"
    assert kind_of("python", "/e/bin/python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=11, "
                   "pipe_handle=17) --multiprocessing-fork") == "dask worker (spawned)"
    assert kind_of("python", "/e/bin/python -c from multiprocessing.forkserver import main; main(7, 8, "
                   "['distributed', 'numpy'], **{'sys_path': []})") == "forkserver and the dask workers it forks"
    assert kind_of("tmux: server", "tmux -u new-session -d -s portal") == "tmux server"
    assert kind_of("bash", "-bash") == "shell"
    assert kind_of("frobnicate", "") == "other (frobnicate)"


def test_the_user_s_processes_are_theirs_uid_or_their_connection_s_sshd():
    from bench.exits import Ended

    listener = 10
    records = [Ended(11, listener, 0, "sshd", 1, 0, 0),  # a connection's root monitor
               Ended(12, 11, 103, "sshd", 1, 0, 0),  # its pre-auth child
               Ended(13, 99, 1001, "bash", 1, 0, 0),  # the user's
               Ended(14, 99, 1002, "bash", 1, 0, 0),  # someone else's
               Ended(15, 1, 0, "cron", 1, 0, 0)]
    assert sorted(e.pid for e in _ended_of(records, 1001, listener, {})) == [11, 12, 13]
    seen = {16: Proc(16, 1, 1001, "python")}
    assert [e.pid for e in _ended_of([Ended(16, 1, 1001, "python3", 1, 0, 0)], 1001, listener, seen)] == [16]


def test_memory_is_split_into_clusters_sessions_and_portal_s_own():
    kinds = {"dask scheduler": (2, 100), "dask worker (spawned)": (2, 50), "IPython": (2, 30), "tmux server": (2, 4),
             "shell": (6, 6), FORKSERVER: (3, 70)}
    assert sides(kinds) == {"cluster": 220, "session": 30, "portal": 10}


def test_a_worker_forked_by_the_forkserver_is_no_interpreter_start():
    server = "/e/bin/python -c from multiprocessing.forkserver import main; main(7, 8, ['distributed'])"
    procs = [Proc(10, 1, 1000, "dask", "/e/bin/python /e/bin/dask worker --nworkers 2", "/e/bin/python", 0.3),
             Proc(11, 10, 1000, "python", server, "/e/bin/python", 0.3),
             Proc(12, 11, 1000, "python", server, "/e/bin/python", 0.05),
             Proc(13, 11, 1000, "python", server, "/e/bin/python", 0.05)]
    usage = Usage(procs)
    assert usage.pythons == 2  # the nannies' `dask worker` and the forkserver; its two workers are forks
    assert usage.by_kind()[FORKSERVER][:2] == (3, 1)
