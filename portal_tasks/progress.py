"""Step lines that turn ✓/✗ with their time, and the closing table: rich on a terminal, plain text otherwise
(a log, a pipe, a script: rich is then never imported, 0.03 CPU-s of every such `portal` call)."""

from __future__ import annotations

import contextlib
import sys
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from rich.console import Console


def _terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@lru_cache(maxsize=1)
def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@contextlib.contextmanager
def step(name: str, detail: str = "") -> Iterator[None]:
    start = time.monotonic()
    label = f"{name} {detail}".strip()
    terminal = _terminal(sys.stderr)
    try:
        if terminal:
            from rich.markup import escape

            with _console().status(f"{escape(label)} …"):
                yield
        else:
            yield
    except BaseException:
        _done("✗", "red", label, time.monotonic() - start, terminal)
        raise
    _done("✓", "green", label, time.monotonic() - start, terminal)


def _done(mark: str, colour: str, label: str, seconds: float, terminal: bool) -> None:
    if terminal:
        from rich.markup import escape

        _console().print(f"[{colour}]{mark}[/{colour}] {escape(label)}  ({seconds:.2f}s)")
    else:
        print(f"{mark} {label}  ({seconds:.2f}s)", file=sys.stderr, flush=True)


def table(rows: list[tuple[str, str, str]], host: str) -> None:
    """What runs, on which host port, at which local URL."""
    if not rows:
        return
    head = ("service", f"on {host}", "on this laptop")
    if not _terminal(sys.stdout):  # a log or a pipe: columns of text, never a URL cut
        print(plain_table(f"portal on {host}", head, rows), flush=True)
        return
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"portal on {host}", title_justify="left")
    out.add_column(head[0])
    out.add_column(head[1])
    out.add_column(head[2], overflow="fold")
    for row in rows:
        out.add_row(*row)
    Console(highlight=False).print(out)


def plain_table(title: str, head: tuple[str, ...], rows: list[tuple[str, str, str]]) -> str:
    """The table as aligned columns of text (pure)."""
    widths = [max(len(cell) for cell in column) for column in zip(head, *rows)]
    lines = [title] + ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in (head, *rows)]
    return "\n".join(lines)
