"""tmux command builders, as data; every target is an exact match."""

from __future__ import annotations

import shlex

from portal_tasks.remote import tmux as cmds
from portal_tasks.remote import tmux


def test_session_commands_use_exact_targets() -> None:
    assert cmds.has_session("portal") == ["tmux", "has-session", "-t", "=portal"]
    assert cmds.new_session("portal") == ["tmux", "new-session", "-d", "-s", "portal", "-n", "shell"]
    assert cmds.attach("portal") == ["tmux", "attach", "-t", "=portal"]


def test_ensure_session_line_is_idempotent_shell() -> None:
    assert cmds.ensure_session_line("portal") == (
        "tmux has-session -t =portal 2>/dev/null || tmux new-session -d -s portal -n shell"
    )


def test_new_window_carries_environment() -> None:
    argv = cmds.new_window("portal", "ipython-a", {"DASK_SCHEDULER_ADDRESS": "tls://127.0.0.1:20000", "X": "a b"})
    assert argv == ["tmux", "new-window", "-d", "-t", "=portal:", "-n", "ipython-a",
                    "-e", "DASK_SCHEDULER_ADDRESS=tls://127.0.0.1:20000", "-e", "X=a b"]


def test_send_keys_types_a_line_and_enter() -> None:
    assert cmds.send_keys("portal", "env-a", "conda activate a") == [
        "tmux", "send-keys", "-t", "=portal:=env-a", "conda activate a", "Enter"]
    assert cmds.send_keys("portal", "env-a", "a", "b")[4:] == ["a", "Enter", "b", "Enter"]


def test_hostile_session_name_stays_one_argument() -> None:
    name = "x;touch /tmp/pwned $(id)"
    line = cmds.ensure_session_line(name)
    assert shlex.split(line.replace(" 2>/dev/null ||", " ||")) == [
        "tmux", "has-session", "-t", f"={name}", "||", "tmux", "new-session", "-d", "-s", name, "-n", "shell"]
    for line in cmds.explain_window(cmds.window_plan(name, "w", ["echo hi"], {"A": "$(id)"})):
        assert "$(id)" not in line or "'" in line


def test_explained_window_is_what_the_helper_runs() -> None:
    plan = cmds.window_plan("portal", "ipython-a", ["source /e/bin/activate", "ipython"], {"A": "1"}, "busy", "m")
    assert cmds.explain_window(plan) == [
        "tmux kill-window -t =portal:=ipython-a 2>/dev/null || true",
        "tmux new-window -d -t =portal: -n ipython-a -e A=1",
        "tmux set-option -w -t =portal:=ipython-a @portal m",
        "tmux send-keys -t =portal:=ipython-a 'source /e/bin/activate' Enter",
        "tmux send-keys -t =portal:=ipython-a ipython Enter",
    ]
    shown = [shlex.split(line) for line in cmds.explain_window(plan)[1:]]
    assert shown[:2] == plan["argv"][:2]
    # the helper types both lines with one tmux process; pasted, the two send-keys type the same keys
    assert plan["argv"][2] == cmds.send_keys("portal", "ipython-a", "source /e/bin/activate", "ipython") == [
        *shown[2], *shown[3][4:]]


def test_window_options_and_kill() -> None:
    assert cmds.set_window_option("p", "w", "@portal", "v") == ["tmux", "set-option", "-w", "-t", "=p:=w", "@portal", "v"]
    assert cmds.kill_window("p", "w") == ["tmux", "kill-window", "-t", "=p:=w"]


def test_kill_session_is_an_exact_target() -> None:
    assert cmds.kill_session("portal") == ["tmux", "kill-session", "-t", "=portal"]


def test_down_closes_the_step_windows_of_the_env_or_of_all_in_the_sessions_order() -> None:
    names = ["shell", "env-a", "cluster-a", "ipython-a", "jupyter-b", "ipython-ab", "notes", "workers-a"]
    assert tmux.step_windows(names, "a", False) == ["env-a", "cluster-a", "ipython-a"]
    assert tmux.step_windows(names, "a", True) == ["env-a", "ipython-a"]
    assert tmux.step_windows(names, None, False) == ["env-a", "cluster-a", "ipython-a", "jupyter-b", "ipython-ab"]
    assert tmux.step_windows(names, None, True) == ["env-a", "ipython-a", "jupyter-b", "ipython-ab"]


def test_only_shells_at_their_prompt_are_idle() -> None:
    assert tmux.only_idle(["bash", "zsh"]) and tmux.only_idle([])
    assert not tmux.only_idle(["bash", "vim"]) and not tmux.only_idle([""])
