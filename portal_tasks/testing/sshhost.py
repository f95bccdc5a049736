"""The ssh:// test server: an existing host, reached with the current user's own ssh config."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from portal_tasks.envs import is_path
from portal_tasks.runner import run
from portal_tasks.testing.server import TestServer, TestServerError, TestUser, close_masters


def resolved_options(text: str) -> dict[str, str]:
    """`ssh -G` output as {keyword: value}; for a keyword given more than once the first wins, as in ssh."""
    resolved: dict[str, str] = {}
    for line in text.splitlines():
        keyword, _, value = line.partition(" ")
        resolved.setdefault(keyword.lower(), value)
    return resolved


class SshHostServer:
    """`ssh://[USER@]HOST`: alice is that login (else the ssh config's User); there is no bob, no login node,
    no cleanup of the host."""

    name = "ssh"

    def __init__(self, spec: str, *, envs: dict[str, str] | None = None) -> None:
        url = urlsplit(spec)
        if url.scheme != "ssh" or not url.hostname:
            raise TestServerError(f"cannot read test server {spec!r}", hint="Write it as ssh://[USER@]HOST.")
        self.host = url.netloc.rsplit("@", 1)[-1]  # keeps :port and the alias exactly as written
        self.login: str | None = url.username  # None: the one the ssh config gives (ssh -G), as plain ssh does
        #: a path as a Path; an env name (no `/`: `a`, a conda env of the host) as the str portal is given
        self.envs: dict[str, Path | str] = {k: Path(v) if is_path(v) else v for k, v in (envs or {}).items()}
        self.ssh_config = Path.home() / ".ssh" / "config"  # read now: tests later point HOME elsewhere
        self.laptop: Path | None = None

    def start(self) -> TestServer:
        self.laptop = Path(tempfile.mkdtemp(prefix="pt-"))  # short: control sockets live under it
        (self.laptop / "run").mkdir(mode=0o700)
        config = self.ssh_config if self.ssh_config.exists() else self.laptop / "ssh_config"
        if not config.exists():
            config.write_text("# no ~/.ssh/config on this machine\n")
        resolved = self.resolve(config)
        login = resolved["user"]
        target = f"{login}@{self.host}"
        res = run(["ssh", "-F", str(config), "-o", "BatchMode=yes", target, "--", 'id -u; printf "%s\\n" "$HOME"'],
                  timeout=60)
        if not res.ok:
            raise TestServerError(f"cannot log in as {login}: {res.tail()}", host=self.host,
                                  hint=f"Check `ssh {target} true` works without a password prompt.")
        uid, home = res.stdout.split("\n")[:2]
        identity = resolved.get("identityfile", "")
        alice = TestUser(role="alice", name=login, uid=int(uid), home=Path(home),
                         key=Path(identity).expanduser(), ssh_config=config, laptop=self.laptop,
                         runtime=self.laptop / "run")
        return TestServer(backend="ssh", host=self.host, address=resolved.get("hostname", self.host), login_host=None,
                          via_login_host=None, envs=self.envs, users={"alice": alice}, run_id=self.laptop.name)

    def resolve(self, config: Path) -> dict[str, str]:
        """What ssh makes of the host with this config (`ssh -G`, nothing is connected): its `user` is the
        URL's, else the config's User, else the local name, as for plain ssh."""
        asked = f"{self.login}@{self.host}" if self.login else self.host
        found = run(["ssh", "-F", str(config), "-G", asked], timeout=10)
        if not found.ok:
            raise TestServerError(f"ssh cannot read its config for {asked}: {found.tail()}", host=self.host,
                                  hint=f"Check `ssh -F {config} -G {asked}`.")
        return resolved_options(found.stdout)

    def close(self) -> None:
        """Only the local laptop dir goes: nothing on a real host is touched."""
        if self.laptop is not None:
            close_masters(self.laptop)
            shutil.rmtree(self.laptop, ignore_errors=True)
            self.laptop = None
