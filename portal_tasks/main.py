"""The ``portal`` console script: an invoke Program over the task collection, config prefix ``portal``."""

from __future__ import annotations

import os

from invoke import Program
from invoke.exceptions import Exit

from . import __version__
from .config import PortalConfig
from .tasks import ns


def _config_failure(exc: Exception) -> Exit:
    first = " ".join(str(exc).split())[:300]
    return Exit(f"portal: cannot read portal config ({type(exc).__name__}: {first}). "
                "Fix the file named above (portal.yaml, ~/.portal.yaml or /etc/portal.yaml).", code=1)


class PortalProgram(Program):
    """invoke's Program, plus ./portal.yaml as project config and one-line config errors."""

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
