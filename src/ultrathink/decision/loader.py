"""Find a strategy class by built-in name or in a user's Python file (``path.py[:Class]``)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from ultrathink.decision.builtin import BUILTIN_STRATEGIES
from ultrathink.decision.strategy import Strategy
from ultrathink.errors import StrategyError


def resolve_strategy(spec: str) -> type[Strategy]:
    """Return the strategy class named by ``spec``.

    Parameters
    ----------
    spec : str
        A built-in name (``sma_cross``, ``buy_and_hold``) or ``path/to/file.py`` optionally
        followed by ``:ClassName`` when the file defines several strategies.
    """
    if spec in BUILTIN_STRATEGIES:
        return BUILTIN_STRATEGIES[spec]
    if spec == "ml":  # imported on demand: it brings the feature kernels and numba
        from ultrathink.decision.ml import MLStrategy

        return MLStrategy
    path_part, _, class_name = spec.partition(":") if ".py:" in spec else (spec, "", "")
    if not path_part.endswith(".py"):
        raise StrategyError(
            f"unknown strategy {spec!r}; use one of {[*sorted(BUILTIN_STRATEGIES), 'ml']} "
            "or a path to a Python file (my_strategy.py[:ClassName])"
        )
    return _load_from_file(Path(path_part), class_name or None)


def _load_from_file(path: Path, class_name: str | None) -> type[Strategy]:
    if not path.is_file():
        raise StrategyError(f"strategy file {path} not found")
    module_name = f"ultrathink_user_strategy_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise StrategyError(f"strategy file {path} cannot be imported")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # user code: report, don't crash with a traceback
        sys.modules.pop(module_name, None)
        raise StrategyError(f"strategy file {path} failed to import: {exc!r}") from exc
    found = {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, Strategy)
        and obj is not Strategy
        and obj.__module__ == module_name
    }
    if class_name is not None:
        if class_name not in found:
            raise StrategyError(
                f"{path} has no Strategy subclass {class_name!r}; found {sorted(found)}"
            )
        return found[class_name]
    if not found:
        raise StrategyError(
            f"{path} defines no Strategy subclass; subclass ultrathink.decision.Strategy "
            "and override on_bar"
        )
    if len(found) != 1:
        raise StrategyError(
            f"{path} defines {len(found)} Strategy subclasses {sorted(found)}; "
            "pick one with path.py:ClassName"
        )
    return next(iter(found.values()))
