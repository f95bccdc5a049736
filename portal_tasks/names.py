"""Names are data, never code (pure): an env or host that a shell would read as code is refused, not quoted.

Env names and paths end up in lines typed into the user's windows (bash, zsh, fish, tcsh) and in ssh
command lines; hosts in ssh argvs and in the lines ``--explain`` prints. Rather than trust every one of
those places to quote for every shell, a value with anything but the characters names and paths are made
of is refused in one line before anything runs, on either side. Paths with spaces are refused too (see
docs/DECISIONS.md): a link without spaces to such an env works everywhere.
"""

from __future__ import annotations

import re

from .errors import UsageError

#: A conda/mamba/micromamba env name: what conda itself lets one be, less anything a shell reads.
ENV_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,255}")
#: A venv or conda prefix: a path (``~`` only first), of the characters file names are usually made of.
ENV_PATH = re.compile(r"~?[A-Za-z0-9_.+@,:=/-]{1,4096}")
#: An ssh destination: a name or alias from the ssh config, user@host, an address (``%`` for an IPv6 zone).
HOST = re.compile(r"[A-Za-z0-9_.@:%+-]{1,255}")

_SAID = {" ": "a space", "\n": "a newline", "\t": "a tab", "'": "a quote (')", '"': 'a quote (")', "`": "a backquote",
         "$": "'$'", "\\": "a backslash"}


def _first_bad(value: str, allowed: re.Pattern[str]) -> str:
    """How to name the first character of ``value`` that ``allowed`` does not take there."""
    for i, ch in enumerate(value):
        if not allowed.fullmatch(f"{ch}a" if i == 0 else f"a{ch}"):
            return _SAID.get(ch, repr(ch) if ch.isprintable() else f"the control character {ch!r}")
    return "characters it cannot hold"


def is_path(spec: str) -> bool:
    """A path (venv or conda prefix) rather than an env name: names never hold '/'."""
    return "/" in spec or spec.startswith(("~", "."))


def check_env(spec: str) -> str:
    """``spec`` as given when it is an env name or path portal can type into any shell; else UsageError."""
    if is_path(spec):
        if ENV_PATH.fullmatch(spec):
            return spec
        what = _first_bad(spec, ENV_PATH)
    elif ENV_NAME.fullmatch(spec) and not spec.startswith("-"):
        return spec
    else:
        what = "'-' first" if spec.startswith("-") else _first_bad(spec, ENV_NAME)
    raise UsageError(f"env {spec!r} holds {what}, which a shell would read; portal never sends it to a host.",
                     hint="An env is a name of letters, digits and . _ + - (as `conda env list` shows it), or a "
                          "path of those and / ~ @ , : = (for an env at another path, make a link: "
                          "ln -s 'PATH' ~/envs/NAME, and pass --env ~/envs/NAME).")


def check_host(host: str) -> str:
    """``host`` as given when ssh and every shell read it as a name; else UsageError (nothing has run)."""
    if HOST.fullmatch(host) and not host.startswith("-"):
        return host
    raise UsageError(f"host {host!r} holds {_first_bad(host, HOST)}, which a shell would read; portal never "
                     "connects to it.", hint="Give a host name or an alias from your ssh config.")
