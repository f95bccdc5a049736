"""portal: from the laptop to a working remote setup (tmux, env, IPython/Jupyter, Dask) in one command."""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # `from portal_tasks import ns` without importing invoke for every `import portal_tasks`
    if name == "ns":
        from .tasks import ns

        return ns
    raise AttributeError(name)


__all__ = ["ns", "__version__"]
