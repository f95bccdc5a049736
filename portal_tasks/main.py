"""The ``portal`` console script: an invoke Program over the task collection, config prefix ``portal``."""

from __future__ import annotations

from invoke import Program

from . import __version__
from .config import PortalConfig
from .tasks import ns

program = Program(name="portal", binary="portal", version=__version__, namespace=ns, config_class=PortalConfig)
