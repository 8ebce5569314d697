"""inet: Interaction Networks, a DQN Control Unit in charge of many Processing Units.

The Python API (README, "Python API"), for notebooks and scripts, defined in inet/api.py:
`compose(overrides)` -> RunConfig, `Engine(cfg)`, `run(cfg)` -> run directory,
`load(run_dir)` -> Engine, `evaluate(engine)` -> greedy success per task length.
Names load on first use, so `import inet` (and `inet --version`) does not import torch.
"""
from __future__ import annotations

import types
from typing import Any

from . import compose as _compose_module
from . import run as _run_package
from .version import __version__

__all__ = ["ConfigError", "Engine", "RunConfig", "compose", "evaluate", "load", "run", "__version__"]
_LAZY = ("ConfigError", "Engine", "RunConfig", "evaluate", "load")


class _CallableModule(types.ModuleType):
    """A submodule that, called, is the API function of its name: `inet.compose(...)`, `inet.run(cfg)`.

    `inet.compose` and `inet.run` are the modules inet/compose.py and inet/run/, and
    importing a submodule binds its name on the package, so plain functions of those
    names would be replaced by the modules; called modules keep both working.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from . import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


_compose_module.__class__ = _CallableModule
_run_package.__class__ = _CallableModule


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'inet' has no attribute '{name}'")
