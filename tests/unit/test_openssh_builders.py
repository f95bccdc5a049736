from portal_tasks.config import resolve
from portal_tasks.link import TRANSPORTS, get_link_class
from portal_tasks.link.openssh import command_argv, control_argv, forward_spec, master_argv, ssh_options
from portal_tasks.errors import ConfigError

import pytest


def settings(**kw):
    return resolve(None, "matagorda", **kw)


def test_every_ssh_call_uses_the_control_socket_and_keepalives():
    opts = ssh_options(settings(), "/run/portal/%C")
    assert "ControlPath=/run/portal/%C" in opts
    assert "ServerAliveInterval=15" in opts and "ExitOnForwardFailure=yes" in opts
    assert "-F" not in opts


def test_ssh_config_file_is_passed_with_dash_f():
    opts = ssh_options(settings(ssh_config="/tmp/cfg"), "/c")
    assert opts[:2] == ["-F", "/tmp/cfg"]


def test_master_is_persistent_and_backgrounded():
    argv = master_argv(settings(), "/c", batch=True)
    assert argv[0] == "ssh" and argv[-2:] == ["--", "matagorda"]
    assert "ControlMaster=yes" in argv and "ControlPersist=yes" in argv
    assert "-f" in argv and "-N" in argv and "BatchMode=yes" in argv


def test_commands_reuse_the_master_and_pass_host_and_command_after_double_dash():
    argv = command_argv(settings(), "/c", "tmux ls")
    assert "ControlMaster=no" in argv
    assert argv[-3:] == ["--", "matagorda", "tmux ls"]
    assert "-T" in argv and "-t" not in argv
    assert "-t" in command_argv(settings(), "/c", "tmux attach", tty=True)


def test_forward_binds_the_laptop_loopback_only():
    assert forward_spec(8787, "127.0.0.1:20101") == "127.0.0.1:8787:127.0.0.1:20101"
    assert forward_spec(8888, "/home/a/.portal/j.sock") == "127.0.0.1:8888:/home/a/.portal/j.sock"
    argv = control_argv(settings(), "/c", "forward", forward_spec(1, "127.0.0.1:2"))
    assert argv[-5:] == ["forward", "-L", "127.0.0.1:1:127.0.0.1:2", "--", "matagorda"]
    assert control_argv(settings(), "/c", "exit")[-3:] == ["exit", "--", "matagorda"]


@pytest.mark.parametrize("build", [
    lambda s: master_argv(s, "/c", batch=True),
    lambda s: command_argv(s, "/c", "true"),
    lambda s: control_argv(s, "/c", "check"),
])
def test_every_ssh_argv_ends_its_options_before_the_destination(build):
    argv = build(settings())
    dest = argv.index("matagorda")
    assert argv[dest - 1] == "--" and argv.count("--") == 1


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/pwned", "-J evil", "--", "a b", "a\nb"])
def test_a_host_ssh_could_read_as_an_option_is_refused_in_one_line(host):
    from portal_tasks.errors import UsageError

    with pytest.raises(UsageError) as info:
        resolve(None, host)
    assert repr(host) in info.value.line() and "\n" not in info.value.line()


def test_transport_registry_knows_three_and_names_the_unknown():
    assert set(TRANSPORTS) == {"openssh", "fabric", "local"}
    assert get_link_class("local").name == "local"
    with pytest.raises(ConfigError, match="unknown transport 'telnet'"):
        get_link_class("telnet")
