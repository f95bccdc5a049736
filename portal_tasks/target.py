"""A Target is one host as a step sees it: its settings, its link, what the host told us, and output."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from invoke import Config

from . import config as config_mod
from .config import Settings
from .link import Link, open_link
from .remote import hostpaths
from .replies import Facts
from .runcache import RunCache


HEREDOC = "ON_HOST"


@dataclass
class Explained:
    """The manual commands a step stands for: typed on the host, then typed on the laptop."""

    remote: list[str] = field(default_factory=list)
    local: list[str] = field(default_factory=list)

    def __add__(self, other: "Explained") -> "Explained":
        return Explained(self.remote + other.remote, self.local + other.local)


@dataclass
class Target:
    settings: Settings
    link: Link
    say: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    #: what this run has learnt from the host (facts, env checks, cluster ports), asked once
    cache: RunCache = field(default_factory=RunCache)
    #: the configuration this target was made from (for other hosts of the same run, see :meth:`other`)
    config: Config | None = None

    @property
    def host(self) -> str:
        return self.settings.host

    def facts(self) -> Facts:
        """The host's probe (uid, user, home, tmux, managers, memory), fetched once."""
        if self.cache.facts is None:
            self.cache.facts = self.link.helper("probe", {})
        return self.cache.facts

    def server_dir(self) -> str:
        """This server's state directory on the host (``~/.portal/hosts/MACHINE``): what runs there."""
        facts = self.facts()
        return hostpaths.server_dir(str(facts["home"]), str(facts["hostname"]))

    def other(self, host: str) -> Target:
        """Another host of the same run (same configuration and ssh config), e.g. a server for workers."""
        return make_target(self.config, host, ssh_config=self.settings.ssh_config)

    def render(self, explained: Explained) -> str:
        """Explained commands as one pasteable script: the host's lines in a heredoc fed to
        ``ssh HOST bash -s`` (so the laptop's lines after it still run on the laptop), then the laptop's."""
        lines: list[str] = []
        login = self.link.explain_login()
        if login and explained.remote:
            lines.append(f"{login[0]} bash -s <<'{HEREDOC}'    # the lines up to {HEREDOC} run on {self.host}")
            lines += explained.remote
            lines.append(HEREDOC)
        else:
            lines += explained.remote
        lines += explained.local
        return "\n".join(lines)


def make_target(config: Config | None, host: str | None, **overrides: Any) -> Target:
    settings = config_mod.resolve(config, host or "localhost", **overrides)
    return Target(settings=settings, link=open_link(settings), config=config)
