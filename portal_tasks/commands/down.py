"""`down`: stop what `up` started for this user (or one env), cancel forwards. Nothing of anyone else.

What runs on the host goes in one ``down`` helper call (``remote/down.py``): Jupyter, worker jobs,
clusters, portal's windows, the session. The laptop then stops workers on other servers (it reaches
them) and cancels its forwards.
"""

from __future__ import annotations

import contextlib
import shlex

from .. import plan, state
from ..envs import env_key
from ..errors import ClusterError, PortalError
from ..link.openssh import explain_ssh
from ..remote import tmux
from ..replies import Down
from ..target import Explained, Target

#: Jupyter servers, clusters and jobs may each take a while to end (each wait is bounded on the host).
HELPER_TIMEOUT = 300


def host_payload(target: Target, key: str | None, env: str | None, keep_cluster: bool) -> dict[str, object]:
    """What the ``down`` verb is asked (``first`` None: the host knows the user's own block)."""
    return {"session": target.settings.session, "key": key, "env": env, "keep_cluster": keep_cluster,
            "plan": dict(plan.plan_payload(target.settings, 0), first=None)}


def run(target: Target, env: str | None = None, keep_cluster: bool = False) -> None:
    from ..parts import nodes

    key = env_key(env) if env else None
    reply: Down = target.link.helper("down", host_payload(target, key, env, keep_cluster), timeout=HELPER_TIMEOUT)
    if reply.get("facts"):
        target.cache.facts = reply["facts"]
    stopped = list(reply["stopped"])
    shift = 0
    for entry in reply["clusters"]:  # their workers' words go before the cluster's own
        words = nodes.stop(target, entry)
        stopped[entry["at"] + shift:entry["at"] + shift] = words
        shift += len(words)
    survivors = reply["survivors"]
    if survivors:
        raise ClusterError(f"cluster processes {survivors['pids']} of env {survivors['env']} did not end.",
                           host=target.host, hint="Look at them with ps, and kill them by pid.")
    with state.laptop_lock(target.host):
        forwards = state.load_forwards(target.host)
        for name, remembered in list(forwards.items()):
            ours = key is None or name.endswith(f"-{key}")
            kept = keep_cluster and name.startswith("dashboard")  # the cluster runs on: keep its dashboard
            if ours and not kept:
                with contextlib.suppress(PortalError):
                    target.link.cancel_forward(int(remembered["local_port"]), str(remembered["remote"]))
                del forwards[name]
                stopped.append(f"forward {name}")
        state.save_forwards(target.host, forwards)
    if not forwards and key is None:
        target.link.close()
    print(f"{target.host}: stopped " + (", ".join(stopped) if stopped else "nothing (nothing of yours ran)"))


def explain(target: Target, env: str | None = None, keep_cluster: bool = False) -> Explained:
    key = env_key(env) if env else "ENV"
    remote = [shlex.join(tmux.kill_window(target.settings.session, f"{p}-{key}")) + " 2>/dev/null"
              for p in tmux.step_prefixes(keep_cluster)]
    exit_master = shlex.join([*explain_ssh(target.settings), "-O", "exit", target.host])
    local = [] if target.settings.is_local else [f"{exit_master}    # ends the master connection and its forwards"]
    return Explained(remote=remote, local=local)
