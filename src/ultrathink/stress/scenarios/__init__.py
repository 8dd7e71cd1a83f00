"""The scenario kinds (one module each, setting ``SCENARIO``) and the shipped scenario files.

Adding a kind is adding a module here that defines ``SCENARIO = MyScenario`` and a TOML file
beside it; adding a scenario of an existing kind is adding a TOML file. Nothing else changes:
``ultrathink stress list`` and ``suite`` find both.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from ultrathink.stress.base import Scenario

__all__ = ["kinds", "scenario_files"]

_HERE = Path(__file__).resolve().parent


@cache
def kinds() -> dict[str, type[Scenario]]:
    """Every scenario kind, by its ``kind`` name."""
    found: dict[str, type[Scenario]] = {}
    for info in pkgutil.iter_modules([str(_HERE)]):
        module = importlib.import_module(f"{__name__}.{info.name}")
        cls = getattr(module, "SCENARIO", None)
        if isinstance(cls, type) and issubclass(cls, Scenario):
            found[cls.kind] = cls
    return found


def scenario_files() -> dict[str, Path]:
    """The shipped scenario files, by scenario name (the file's stem), sorted."""
    return {p.stem: p for p in sorted(_HERE.glob("*.toml"), key=lambda p: p.stem)}
