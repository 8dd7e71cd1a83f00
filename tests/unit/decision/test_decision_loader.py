"""resolve_strategy: built-in names and user strategies from Python files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ultrathink.decision import Strategy
from ultrathink.decision.builtin import BuyAndHold, SmaCross
from ultrathink.decision.loader import resolve_strategy
from ultrathink.errors import StrategyError

ONE_CLASS = """
from ultrathink.decision import Strategy


class Momentum(Strategy):
    name = "momentum"

    class Params(Strategy.Params):
        window: int = 20
"""

TWO_CLASSES = """
from ultrathink.decision import Strategy


class First(Strategy):
    name = "first"


class Second(Strategy):
    name = "second"
"""

IMPORTS_A_BUILTIN = """
from ultrathink.decision.builtin import SmaCross
from ultrathink.decision import Strategy


class Mine(SmaCross):
    name = "mine"
"""

NO_STRATEGY = """
class NotAStrategy:
    pass


VALUE = 1
"""


def write(tmp_path: Path, source: str, name: str = "user_strategy.py") -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


@pytest.mark.parametrize(("spec", "cls"), [("sma_cross", SmaCross), ("buy_and_hold", BuyAndHold)])
def test_resolves_builtins(spec: str, cls: type[Strategy]) -> None:
    assert resolve_strategy(spec) is cls


def test_unknown_name_lists_builtins_and_file_syntax() -> None:
    with pytest.raises(StrategyError) as info:
        resolve_strategy("sma_crosss")

    message = str(info.value)
    assert "'sma_crosss'" in message
    assert "buy_and_hold" in message
    assert "sma_cross" in message
    assert ".py" in message


def test_loads_single_strategy_from_file(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_CLASS)

    cls = resolve_strategy(str(path))

    assert issubclass(cls, Strategy)
    assert cls.__name__ == "Momentum"
    assert cls.name == "momentum"
    assert cls(window=5).get_params() == {"window": 5}


def test_loads_named_class_from_file_with_several(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_CLASSES)

    first = resolve_strategy(f"{path}:First")
    second = resolve_strategy(f"{path}:Second")

    assert (first.name, second.name) == ("first", "second")


def test_several_classes_without_a_name_asks_to_pick_one(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_CLASSES)

    with pytest.raises(StrategyError) as info:
        resolve_strategy(str(path))

    message = str(info.value)
    assert str(path) in message
    assert "2 Strategy subclasses" in message
    assert "First" in message
    assert "Second" in message
    assert ":ClassName" in message


def test_unknown_class_name_lists_what_was_found(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_CLASSES)

    with pytest.raises(StrategyError) as info:
        resolve_strategy(f"{path}:Third")

    message = str(info.value)
    assert "'Third'" in message
    assert "First" in message
    assert "Second" in message


def test_imported_strategies_are_not_candidates(tmp_path: Path) -> None:
    path = write(tmp_path, IMPORTS_A_BUILTIN)

    cls = resolve_strategy(str(path))

    assert cls.__name__ == "Mine"
    assert issubclass(cls, SmaCross)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.py"

    with pytest.raises(StrategyError, match="not found") as info:
        resolve_strategy(str(path))

    assert str(path) in str(info.value)


def test_syntax_error_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "class Broken(:\n    pass\n")

    with pytest.raises(StrategyError) as info:
        resolve_strategy(str(path))

    message = str(info.value)
    assert str(path) in message
    assert "failed to import" in message
    assert "SyntaxError" in message


def test_exception_raised_while_importing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "raise RuntimeError('boom at import')\n")

    with pytest.raises(StrategyError, match="boom at import") as info:
        resolve_strategy(str(path))

    assert isinstance(info.value.__cause__, RuntimeError)


def test_file_without_strategy_subclass(tmp_path: Path) -> None:
    path = write(tmp_path, NO_STRATEGY)

    with pytest.raises(StrategyError) as info:
        resolve_strategy(str(path))

    message = str(info.value)
    assert str(path) in message
    assert "defines no Strategy subclass" in message


def test_directory_named_like_a_python_file_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "pkg.py"
    folder.mkdir()

    with pytest.raises(StrategyError, match="not found"):
        resolve_strategy(str(folder))


def test_non_python_path_is_an_unknown_strategy(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_CLASS, name="strategy.txt")

    with pytest.raises(StrategyError, match="unknown strategy"):
        resolve_strategy(str(path))
