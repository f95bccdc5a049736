"""The dashboard through Jupyter without a host: the kernels' link, the command line, and the proxy's limits."""

from __future__ import annotations

import json
import os
import socket
import types

from portal_tasks.daskcmd import DASHBOARD_LINK, through_jupyter
from portal_tasks.remote import jupyter as remote_jupyter
from portal_tasks.parts.jupyter import jupyter_command


def test_kernels_get_the_dashboard_through_jupyters_own_port():
    variables = {"DASK_SCHEDULER_ADDRESS": "tls://127.0.0.1:20000", DASHBOARD_LINK: "http://localhost:20001/status"}
    assert through_jupyter(variables) == {**variables, DASHBOARD_LINK: "/proxy/20001/status"}
    assert through_jupyter({}) == {}


def test_the_proxy_config_goes_first_on_jupyters_config_path():
    line = jupyter_command(20002, config_dir="/home/a b/.portal/jupyter/a/config")
    assert line.startswith("JUPYTER_CONFIG_PATH='/home/a b/.portal/jupyter/a/config'${JUPYTER_CONFIG_PATH:+:"
                           "$JUPYTER_CONFIG_PATH} jupyter lab ")
    assert "JUPYTER_CONFIG_PATH" not in jupyter_command(20002)


def allowed(tmp_path, path: str, host: str = "localhost", holders: set[int] | None = None,
            base_url: str = "/", safe: bool = True) -> bool:
    """Run the config portal writes, as Jupyter would, and ask its allowlist about one request."""
    clusters = tmp_path / "clusters"
    clusters.mkdir(exist_ok=True)
    (clusters / "a.json").write_text(json.dumps({"dashboard_port": 20001}))
    config = types.SimpleNamespace(ServerProxy=types.SimpleNamespace())
    scope: dict[str, object] = {"c": config}
    exec(remote_jupyter.proxy_config(str(clusters), str(tmp_path / "config")), scope)  # noqa: S102 - the file Jupyter runs
    scope["_portal_listening_uids"] = lambda port: {os.getuid()} if holders is None else holders
    scope["_PORTAL_PROXY_SAFE"] = safe  # as a jupyter-server-proxy without (or with) CVE-2024-28179 would make it
    handler = types.SimpleNamespace(base_url=base_url, request=types.SimpleNamespace(path=path))
    return bool(config.ServerProxy.host_allowlist(handler, host))


def test_the_proxy_reaches_only_the_users_own_dashboard(tmp_path):
    assert allowed(tmp_path, "/proxy/20001/status")
    assert allowed(tmp_path, "/proxy/20001/status/ws", host="127.0.0.1")
    assert allowed(tmp_path, "/j/proxy/absolute/20001/status", base_url="/j/")
    assert not allowed(tmp_path, "/proxy/20002/")  # not a dashboard of the user's clusters
    assert not allowed(tmp_path, "/proxy/20001/status", host="10.0.0.5")
    assert not allowed(tmp_path, "/proxy/localhost:9999/x/proxy/20001/")  # the port is the first one
    assert not allowed(tmp_path, "/proxy/20001/status", holders={os.getuid(), os.getuid() + 1})  # someone on ::1
    assert not allowed(tmp_path, "/proxy/20001/status", holders=set())  # nothing listens: nothing to reach


def test_a_proxy_with_cve_2024_28179_reaches_nothing_and_kernels_get_the_direct_link(tmp_path, monkeypatch):
    assert not allowed(tmp_path, "/proxy/20001/status", safe=False)
    for version, safe in (("4.1.1", True), ("4.6.0", True), ("3.2.3", True), ("3.2.4", True), ("5.0", True),
                          ("4.1.0", False), ("4.0.0", False), ("3.2.2", False), ("1.5.3", False), (None, False)):
        assert remote_jupyter.proxy_safe(version) is safe, version
    monkeypatch.setenv(DASHBOARD_LINK, "/proxy/20001/status")
    monkeypatch.setitem(__import__("sys").modules, "jupyter_server_proxy", None)  # nothing to patch
    scope: dict[str, object] = {"c": types.SimpleNamespace(ServerProxy=types.SimpleNamespace()),
                                "__name__": "portal_config"}
    text = remote_jupyter.proxy_config(str(tmp_path), str(tmp_path / "config"))
    exec(text.replace("proxy_safe(_portal_proxy_version())", "proxy_safe('4.1.0')"), scope)  # noqa: S102
    assert os.environ[DASHBOARD_LINK] == "http://localhost:20001/status"  # what the kernels inherit


def test_the_proxy_config_reads_who_listens_on_a_port(tmp_path):
    scope: dict[str, object] = {"c": types.SimpleNamespace(ServerProxy=types.SimpleNamespace())}
    exec(remote_jupyter.proxy_config(str(tmp_path), str(tmp_path / "config")), scope)  # noqa: S102
    uids = scope["_portal_listening_uids"]
    assert callable(uids)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert uids(port) == {os.getuid()}
    assert uids(port) == set()


def test_check_says_what_jupyterlab_can_do_with_the_cluster():
    from portal_tasks.commands.check import in_jupyter

    both = in_jupyter("a", {"jupyter_server_proxy": True, "dask_labextension": True})
    assert [ok for ok, _ in both] == [True, True]
    none = in_jupyter("a", {})
    assert none == [(None, "dashboard through Jupyter not available in env 'a'; `pip install jupyter-server-proxy`"),
                    (None, "Dask panes in JupyterLab not available in env 'a'; `pip install dask-labextension`")]
    panes_only = in_jupyter("a", {"dask_labextension": True})
    assert panes_only[1][0] is None and "only with jupyter-server-proxy" in panes_only[1][1]


def test_check_names_a_jupyter_server_proxy_with_a_known_hole_and_the_upgrade():
    from portal_tasks.envs import Env
    from portal_tasks.commands.check import in_jupyter

    modules = {"jupyter_server_proxy": True, "dask_labextension": True}
    (ok, text), *_ = in_jupyter("lab", modules, {"jupyter-server-proxy": "4.1.0"})
    assert ok is None and "jupyter-server-proxy 4.1.0" in text and "CVE-2024-28179" in text
    assert text.endswith("`pip install -U 'jupyter-server-proxy>=4.1.1'`") and "\n" not in text
    (ok, text), *_ = in_jupyter("lab", modules, {"jupyter-server-proxy": "4.1.1"})
    assert ok is True and "JupyterLab also serves the dashboard" in text
    env = Env(spec="lab", kind="venv", location="/e", versions={"jupyter-server-proxy": "3.2.2", "jupyter_server": "1.9.0"})
    assert not env.proxy_safe() and env.lab_socket()
    assert Env(spec="x", kind="venv", location="/e").proxy_safe()  # not checked: the host decides
    assert not Env(spec="x", kind="venv", location="/e", versions={"jupyter_server": "1.8.9"}).lab_socket()


def test_jupyter_on_a_socket_only_where_a_forward_carries_it():
    from portal_tasks.config import resolve
    from portal_tasks.envs import Env
    from portal_tasks.parts.jupyter import on_socket

    env = Env(spec="a", kind="venv", location="/e", versions={"jupyter_server": "2.14.2"})
    remote = types.SimpleNamespace(settings=resolve(None, "matagorda"))
    local = types.SimpleNamespace(settings=resolve(None, "localhost"))  # portal on the host itself
    assert on_socket(remote, env, True) and not on_socket(remote, env, False)  # type: ignore[arg-type]
    assert not on_socket(local, env, True)  # type: ignore[arg-type]
