"""The command lines portal hands to sshd (pure): valid in every login shell a server user may have.

sshd runs a client's command as ``$SHELL -c LINE`` in the user's login shell: sh, bash, zsh, fish, tcsh or
csh. They agree on little: tcsh refuses a newline inside quotes and runs history expansion on ``!`` even
inside single quotes, fish reads ``\\`` inside single quotes as an escape, zsh expands a word that starts
with ``=``. What they all read the same way is one line of words that are either plain (letters, digits
and ``_@+:,./-``) or single-quoted with none of ``'``, ``\\``, ``!`` or a control character inside. Every
command line portal sends over ssh is built here from such words; a value that cannot be one is refused
(names are data, never code), and a program with newlines travels as base64 (:func:`python_program`).
"""

from __future__ import annotations

import base64
import re
import shlex
import zlib
from collections.abc import Sequence

from .errors import UsageError

#: A word every shell reads as itself without quotes.
PLAIN = re.compile(r"[A-Za-z0-9_@+:,./-]+")
#: What no single-quoted word may hold: tcsh's history ``!``, fish's escape ``\``, the quote itself.
UNQUOTABLE = frozenset("'\\!")


def quotable(arg: str) -> bool:
    """Whether ``arg`` can be one word of a line every login shell reads alike."""
    return all(ch.isprintable() and ch not in UNQUOTABLE for ch in arg)


def word(arg: str) -> str:
    """``arg`` as one shell word that sh, bash, zsh, fish, tcsh and csh all read as ``arg`` (no expansion).

    Raises UsageError for a value no such word can hold (a quote, backslash, ``!``, newline, control
    character): such a value is never sent to a shell."""
    if PLAIN.fullmatch(arg):
        return arg
    if not quotable(arg):
        raise UsageError(f"{arg!r} cannot be sent to the host's login shell (it holds a quote, a backslash, "
                         "'!', a newline or a control character).", hint="Use a value without them.")
    return f"'{arg}'"


def line(argv: Sequence[str]) -> str:
    """An argv as one command line for the host's login shell, whatever shell that is."""
    if not argv:
        raise ValueError("an empty command line")
    return " ".join(word(arg) for arg in argv)


def home_file(relative: str) -> str:
    """A file under the user's home as a word the host's shell expands (``~/...``; sh, bash, zsh, fish and
    tcsh all expand a leading ``~/``). ``relative`` must be a plain word."""
    if not PLAIN.fullmatch(relative) or relative.startswith("/"):
        raise ValueError(f"{relative!r} is not a plain relative path")
    return f"~/{relative}"


def program_stub(program: str) -> str:
    """A one-line ``python -c`` program that runs ``program`` (any text, newlines included): compressed,
    base64 (no quote, backslash or ``!``), and readable by every Python from 2.7 on."""
    packed = base64.b64encode(zlib.compress(program.encode(), 9)).decode()
    return f'import base64,zlib;exec(zlib.decompress(base64.b64decode("{packed}")))'


def python_program(python: str, program: str, args: Sequence[str] = (), *, home_args: Sequence[str] = ()) -> str:
    """``PYTHON -c PROGRAM HOME_ARGS... ARGS...`` as one line every login shell reads alike: ``program`` may
    hold newlines and quotes (it travels as base64); ``home_args`` are ``~/`` paths the host's shell expands."""
    return " ".join([word(python), "-c", word(program_stub(program)), *(home_file(h) for h in home_args),
                     *(word(a) for a in args)])


def python_file(python: str, home_path: str, args: Sequence[str] = ()) -> str:
    """``PYTHON ~/HOME_PATH ARGS...``: a Python file under the user's home, run with ``args``."""
    return " ".join([word(python), home_file(home_path), *(word(a) for a in args)])


def pasteable(remote_line: str) -> str:
    """A host command line as one argument of an ``ssh HOST ...`` a person pastes into bash: in double
    quotes when that is safe (it reads better than shlex's ``'"'"'``), else shlex-quoted."""
    if not any(ch in remote_line for ch in '"$`\\!'):
        return f'"{remote_line}"'
    return shlex.quote(remote_line)
