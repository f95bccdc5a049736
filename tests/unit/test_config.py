import pytest

from portal_tasks.config import PortalConfig, resolve
from portal_tasks.errors import ConfigError


def test_defaults_for_localhost_use_the_local_transport():
    s = resolve(None, "localhost")
    assert s.transport == "local" and s.is_local
    assert s.port_base == 20000 and s.block_size == 100 and s.session == "portal"


def test_remote_host_defaults_to_openssh():
    assert resolve(None, "matagorda").transport == "openssh"


def test_per_host_section_overrides_defaults_and_cli_overrides_both():
    cfg = {"port_base": 21000, "hosts": {"matagorda": {"port_base": 30000, "env_manager": "micromamba"}}}
    s = resolve(cfg, "matagorda")
    assert s.port_base == 30000 and s.env_manager == "micromamba"
    assert resolve(cfg, "other").port_base == 21000
    assert resolve(cfg, "matagorda", port_base=25000).port_base == 25000


def test_ssh_config_comes_from_the_environment_when_not_given(monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_SSH_CONFIG", str(tmp_path / "cfg"))
    assert resolve(None, "h").ssh_config == str(tmp_path / "cfg")
    assert resolve(None, "h", ssh_config="/x").ssh_config == "/x"


@pytest.mark.parametrize(
    "cfg, needle",
    [
        ({"port_base": 80}, "port_base 80 is out of range"),
        ({"port_base": "high"}, "port_base 'high' is not a whole number"),
        ({"transport": "carrier-pigeon"}, "unknown transport 'carrier-pigeon'"),
        ({"env_manager": "pip"}, "env_manager 'pip'"),
        ({"session": "a:b"}, "session name 'a:b'"),
        ({"hosts": {"h": {"colour": "red"}}}, "unknown setting(s) colour"),
        ({"hosts": ["h"]}, "'hosts' in portal config must be a mapping"),
    ],
)
def test_bad_config_is_one_clear_line(cfg, needle):
    with pytest.raises(ConfigError) as info:
        resolve(cfg, "h")
    assert needle in info.value.line()
    assert "\n" not in info.value.line()


def test_portal_config_reads_portal_prefixed_variables(monkeypatch):
    monkeypatch.setenv("PORTAL_PORT_BASE", "24000")
    cfg = PortalConfig()
    cfg.load_shell_env()
    assert resolve(cfg, "h").port_base == 24000


def test_per_host_section_from_a_yaml_file(tmp_path, monkeypatch):
    (tmp_path / "portal.yaml").write_text("port_base: 23000\nhosts:\n  matagorda:\n    block_size: 50\n")
    cfg = PortalConfig(project_location=str(tmp_path))
    cfg.load_project()
    assert resolve(cfg, "matagorda").block_size == 50 and resolve(cfg, "matagorda").port_base == 23000
    assert resolve(cfg, "other").block_size == 100
