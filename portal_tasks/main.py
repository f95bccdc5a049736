"""The ``portal`` console script: an invoke Program over the task collection, config prefix ``portal``."""

from __future__ import annotations

import os
import sys

from invoke.program import Program
from invoke.exceptions import Exit

from . import __version__
from .config import PortalConfig
from .tasks import ns


def _config_failure(exc: Exception) -> Exit:
    first = " ".join(str(exc).split())[:300]
    return Exit(f"portal: cannot read portal config ({type(exc).__name__}: {first}). "
                "Fix the file named above (portal.yaml, ~/.portal.yaml or /etc/portal.yaml).", code=1)


def _reader_left() -> None:
    """Send what stdout still holds to /dev/null: the reader of the pipe is gone (`portal up --help | head -1`)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class PortalProgram(Program):
    """invoke's Program, plus ./portal.yaml as project config, one-line config errors, and a closed pipe is no error."""

    def run(self, argv: list[str] | None = None, exit: bool = True) -> None:
        try:
            super().run(argv, exit)
            sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe would print "Exception ignored"
        except SystemExit:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                _reader_left()
            raise
        except BrokenPipeError:  # `portal --list | head -1`: the reader has what it wanted
            _reader_left()
            if exit:
                sys.exit(0)

    def create_config(self) -> None:
        try:
            super().create_config()
        except Exit:
            raise
        except Exception as exc:
            raise _config_failure(exc) from None

    def parse_collection(self) -> None:
        super().parse_collection()
        self.config.set_project_location(os.getcwd())
        try:
            self.config.load_project()
        except Exception as exc:
            raise _config_failure(exc) from None


program = PortalProgram(name="portal", binary="portal", version=__version__, namespace=ns, config_class=PortalConfig)
