"""Step lines that turn ✓/✗ with their time, and the closing table (rich on a terminal, plain otherwise)."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def step(name: str, detail: str = "") -> Iterator[None]:
    start = time.monotonic()
    label = f"{name} {detail}".strip()
    try:
        if console.is_terminal:
            with console.status(f"{label} …"):
                yield
        else:
            yield
    except BaseException:
        console.print(f"[red]✗[/red] {label}  ({time.monotonic() - start:.2f}s)")
        raise
    console.print(f"[green]✓[/green] {label}  ({time.monotonic() - start:.2f}s)")


def table(rows: list[tuple[str, str, str]], host: str) -> None:
    """What runs, on which host port, at which local URL."""
    if not rows:
        return
    out = Table(title=f"portal on {host}", title_justify="left")
    out.add_column("service")
    out.add_column(f"on {host}")
    out.add_column("on this laptop", overflow="fold")
    for row in rows:
        out.add_row(*row)
    stdout = Console(highlight=False)
    if not stdout.is_terminal:  # a log or a pipe: never cut a URL
        stdout = Console(highlight=False, width=200)
    stdout.print(out)
