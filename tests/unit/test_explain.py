"""--explain of the session steps: pasteable lines, quoted, and only read-only questions to the host."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from portal_tasks.config import resolve
from portal_tasks.link.base import Link
from portal_tasks.parts import cluster, env as env_step, ipython, jupyter, tmux
from portal_tasks.target import Target

READ_ONLY = {"probe", "env-check", "ports-report"}


class FakeLink(Link):
    """Answers the helper's read-only verbs; anything that would run or change something fails the test."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.verbs: list[str] = []

    def helper(self, verb: str, payload: Any = None, *, timeout: float | None = 120) -> Any:
        self.verbs.append(verb)
        assert verb in READ_ONLY, f"--explain called {verb}"
        if verb == "probe":
            return {"uid": 1000, "managers": {"conda": "/opt/conda/bin/conda"}, "tmux": "tmux 3.3a",
                    "home": "/home/a", "hostname": "matagorda"}
        if verb == "ports-report":
            return {"envs": {}, "would_be": {"jupyter_port": 20002}, "block": {"start": 20000}}
        spec = payload["env"]
        kind = "named" if "/" not in spec else "venv"
        return {"kind": kind, "prefix": spec if kind == "venv" else f"/opt/conda/envs/{spec}",
                "python": "x/bin/python", "version": "3.11", "manager": "conda",
                "modules": {"IPython": True, "jupyterlab": True, "distributed": True},
                "versions": {"jupyter_server": "2.14.2" if spec != "old" else "1.8.0"}}

    def connect(self) -> None: ...
    def command_argv(self, command: str, *, tty: bool = False) -> list[str]: raise AssertionError("no commands")
    def run_shell(self, command: str, **kw: Any) -> Any: raise AssertionError(f"--explain ran {command}")
    def tmux_bin(self) -> str: raise AssertionError("--explain drove tmux")
    def forward(self, local_port: int, remote: str) -> None: raise AssertionError("no forwards")
    def cancel_forward(self, local_port: int, remote: str) -> None: ...
    def close(self) -> None: ...
    def explain_login(self) -> list[str]: return ["ssh matagorda"]


@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch) -> Target:
    monkeypatch.setattr(cluster, "client_environment",
                        lambda target, env: {"DASK_SCHEDULER_ADDRESS": "tls://127.0.0.1:20000"})
    # config refuses such a name; the builders quote it all the same (defence in depth)
    settings = resolve(None, "matagorda").with_(session="my session;rm -rf ~")
    return Target(settings=settings, link=FakeLink(settings), say=lambda line: None)


def test_tmux_explain_quotes_a_hostile_session_name(target: Target) -> None:
    (line,) = tmux.explain(target).remote
    assert "'=my session;rm -rf ~'" in line and "-s 'my session;rm -rf ~'" in line


def test_env_explain_activates_a_named_env_with_the_hosts_manager(target: Target) -> None:
    lines = env_step.explain(target, env="a").remote
    assert lines[-1] == "tmux send-keys -t '=my session;rm -rf ~:=env-a' 'conda activate a' Enter"


def test_ipython_explain_puts_cluster_variables_in_the_window(target: Target) -> None:
    lines = ipython.explain(target, env="/opt/envs/a").remote
    window = next(shlex.split(line) for line in lines if line.startswith("tmux new-window"))
    keys = shlex.split(lines[-1])
    assert window[:2] == ["tmux", "new-window"] and "DASK_SCHEDULER_ADDRESS=tls://127.0.0.1:20000" in window
    typed = keys[-2]
    assert typed.startswith("source /opt/envs/a/bin/activate && ipython -i -c ")
    code = shlex.split(typed.split(" && ", 1)[1])[-1]
    exec_arg = code[len("exec("):-1]
    compile(eval(exec_arg), "client", "exec")  # the typed code is valid Python


def test_jupyter_explain_keeps_the_token_off_the_command_line(target: Target) -> None:
    text = "\n".join(jupyter.explain(target, env="a").remote)
    assert "-e JUPYTER_TOKEN_FILE=/home/a/.portal/hosts/matagorda/jupyter/a/token" in text
    assert "--ip=127.0.0.1 --port=20002 --ServerApp.port_retries=0" in text
    assert "umask 077" in text and "--no-browser" in text


def test_jupyter_socket_explain_uses_a_private_dir(target: Target) -> None:
    text = "\n".join(jupyter.explain(target, env="a", socket=True).remote)
    assert "--ServerApp.sock=/home/a/.portal/hosts/matagorda/jupyter/a/jupyter.sock" in text
    assert "(umask 077 && mkdir -p /home/a/.portal/hosts/matagorda/jupyter/a)" in text
    old = "\n".join(jupyter.explain(target, env="old", socket=True).remote)  # its jupyter_server has no --sock
    assert "--ServerApp.sock" not in old and "--port=20002" in old


def test_explain_asks_the_host_only_read_only_questions(target: Target) -> None:
    for step, kw in ((tmux, {}), (env_step, {"env": "a"}), (ipython, {"env": "a"}), (jupyter, {"env": "a"})):
        step.explain(target, **kw)
    assert set(target.link.verbs) <= READ_ONLY  # type: ignore[attr-defined]


def test_render_sends_the_host_lines_in_a_heredoc(target: Target) -> None:
    text = target.render(ipython.explain(target, env="a"))
    lines = text.splitlines()
    assert lines[0].startswith("ssh matagorda bash -s <<'ON_HOST'") and lines[-1] == "ON_HOST"
