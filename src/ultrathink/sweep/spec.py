"""What a sweep is asked: the grid, its constraint, the datasets and the date windows.

A sweep is the product datasets x windows x parameter points. Each point gets an id that is a
hash of everything that determines its result (strategy, parameters, data name and content
hash, window, engine configuration), so running a point twice, on any backend or after a
restart, names the same row: ``INSERT OR IGNORE`` on that id is what makes a retried Ray task
or a resumed driver store every point exactly once.

Grammar:

- ``--grid NAME=LO:HI:STEP`` an inclusive range (integers when all three are integers),
  ``--grid NAME=A,B,C`` a list, ``--grid NAME=V`` one value;
- ``--where EXPR`` a constraint over the grid's names: comparisons, ``and``/``or``/``not``,
  ``+ - * / // %`` and numbers (parsed with ``ast`` and evaluated by a whitelist, never
  ``eval``);
- ``--windows all`` (default), ``rolling:LEN:STEP`` (e.g. ``rolling:3y:1y``, units ``y m d``)
  or explicit ``START:END`` date ranges separated by commas.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError

DEFAULT_MAX_POINTS = 100_000
Value = int | float | bool | str


@dataclass(frozen=True)
class Window:
    """A date range of a sweep, inclusive (``all`` is the whole data)."""

    start: str | None = None
    end: str | None = None

    @property
    def label(self) -> str:
        if self.start is None and self.end is None:
            return "all"
        return f"{self.start or ''}:{self.end or ''}"


@dataclass(frozen=True)
class Point:
    """One backtest of a sweep."""

    point_id: str
    data: str
    window: Window
    params: dict[str, Value]


@dataclass(frozen=True)
class SweepSpec:
    """Everything that determines a sweep's points and results (stored with the sweep)."""

    strategy: str
    grid: dict[str, list[Value]]
    where: str | None = None
    random: int | None = None
    seed: int = 0
    data: tuple[str, ...] = ("sp500",)
    windows: str = "all"
    fixed: dict[str, str] = field(default_factory=dict)
    config_path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    metric: str = "sharpe"

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "grid": self.grid, "where": self.where,
            "random": self.random, "seed": self.seed, "data": list(self.data),
            "windows": self.windows, "fixed": self.fixed, "config_path": self.config_path,
            "overrides": self.overrides, "metric": self.metric,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SweepSpec:
        return cls(**{**d, "data": tuple(d["data"])})


# --- grid -------------------------------------------------------------------------------------
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_grid(items: Sequence[str]) -> dict[str, list[Value]]:
    """``["fast=5:50:1", "slow=20,30"]`` -> ``{"fast": [5, ..., 50], "slow": [20, 30]}``."""
    grid: dict[str, list[Value]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name) or not text.strip():
            raise ConfigError(f"--grid {item!r}: expected NAME=LO:HI:STEP or NAME=A,B,C")
        if name in grid:
            raise ConfigError(f"--grid {name} is given twice")
        values = _range(name, text) if ":" in text else [_scalar(v) for v in text.split(",")]
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {name}: values repeat ({text})")
        grid[name] = values
    if not grid:
        raise ConfigError("a sweep needs at least one --grid NAME=LO:HI:STEP")
    return grid


def _range(name: str, text: str) -> list[Value]:
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"--grid {name}={text}: a range is LO:HI:STEP, e.g. 5:50:5")
    try:
        lo, hi, step = (Decimal(p.strip()) for p in parts)
    except InvalidOperation:
        raise ConfigError(f"--grid {name}={text}: LO, HI and STEP must be numbers") from None
    if not all(map(Decimal.is_finite, (lo, hi, step))) or step <= 0 or hi < lo:
        raise ConfigError(f"--grid {name}={text}: needs LO <= HI and STEP > 0")
    count = int((hi - lo) / step) + 1
    if count > 10_000_000:
        raise ConfigError(f"--grid {name}={text}: {count:,} values is too many")
    integral = all(d == d.to_integral_value() for d in (lo, hi, step)) and "." not in text
    values = [lo + i * step for i in range(count)]  # exact decimal steps: 0.1 adds no drift
    return [int(v) for v in values] if integral else [float(v) for v in values]


def _scalar(text: str) -> Value:
    t = text.strip()
    if not t:
        raise ConfigError("--grid: an empty value in a list")
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    for kind in (int, float):
        try:
            value = kind(t)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--grid: {t} is not a finite number")
        return value
    return t


# --- constraint -------------------------------------------------------------------------------
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}  # fmt: skip
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}  # fmt: skip


def parse_where(expr: str | None, names: Sequence[str]) -> Callable[[dict[str, Value]], bool]:
    """A predicate over a point's parameters; a clear error for anything else than the
    grammar in the module docstring or a name not in the grid."""
    if expr is None or not expr.strip():
        return lambda _params: True
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"--where {expr!r}: not an expression ({exc.msg})") from None
    known = set(names)

    def check(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if node.id not in known:
                raise ConfigError(
                    f"--where {expr!r}: {node.id!r} is not a --grid name "
                    f"({', '.join(sorted(known))})"
                )
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ConfigError(f"--where {expr!r}: only numbers may appear, not {node.value!r}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise ConfigError(f"--where {expr!r}: operator not allowed")
        elif isinstance(node, ast.Compare):
            if any(type(op) not in _CMPOPS for op in node.ops):
                raise ConfigError(f"--where {expr!r}: comparison not allowed")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.Not | ast.USub | ast.UAdd):
                raise ConfigError(f"--where {expr!r}: operator not allowed")
        elif not isinstance(
            node,
            ast.Expression | ast.BoolOp | ast.And | ast.Or | ast.Load | ast.operator | ast.cmpop
            | ast.unaryop,
        ):  # fmt: skip
            raise ConfigError(
                f"--where {expr!r}: {type(node).__name__} is not allowed (use comparisons, "
                "and/or/not, + - * / // % and numbers)"
            )
        for child in ast.iter_child_nodes(node):
            check(child)

    check(tree)
    body = tree.body

    def evaluate(node: ast.AST, env: dict[str, Value]) -> Any:
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](evaluate(node.left, env), evaluate(node.right, env))
        if isinstance(node, ast.UnaryOp):
            v = evaluate(node.operand, env)
            return (
                (not v)
                if isinstance(node.op, ast.Not)
                else (-v if isinstance(node.op, ast.USub) else v)
            )
        if isinstance(node, ast.BoolOp):
            values = (evaluate(v, env) for v in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        assert isinstance(node, ast.Compare)
        left = evaluate(node.left, env)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = evaluate(right_node, env)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True

    def predicate(params: dict[str, Value]) -> bool:
        try:
            return bool(evaluate(body, params))
        except (ZeroDivisionError, TypeError) as exc:
            raise ConfigError(f"--where {expr!r} fails on {params}: {exc}") from None

    return predicate


# --- windows ----------------------------------------------------------------------------------
_SPAN = re.compile(r"^(\d+)([ymd])$")


def parse_windows(text: str, first_day: str, last_day: str) -> list[Window]:
    """The windows of ``--windows`` over data from ``first_day`` to ``last_day`` (ISO)."""
    import pandas as pd

    text = text.strip()
    if text in ("", "all"):
        return [Window()]
    if text.startswith("rolling:"):
        parts = text.split(":")
        if len(parts) != 3:
            raise ConfigError(f"--windows {text!r}: expected rolling:LEN:STEP, e.g. rolling:3y:1y")
        length, step = (_offset(p, text) for p in parts[1:])
        start, last = pd.Timestamp(first_day), pd.Timestamp(last_day)
        out: list[Window] = []
        while start + length - pd.Timedelta(days=1) <= last:
            end = start + length - pd.Timedelta(days=1)
            out.append(Window(start.date().isoformat(), end.date().isoformat()))
            start = start + step
        if not out:
            raise ConfigError(
                f"--windows {text!r}: the data ({first_day} to {last_day}) is shorter than "
                "one window"
            )
        return out
    out = []
    for item in text.split(","):
        start_s, sep, end_s = item.strip().partition(":")
        if not sep or not start_s or not end_s:
            raise ConfigError(
                f"--windows {item!r}: expected START:END dates (e.g. 2010-01-01:2014-12-31), "
                "rolling:LEN:STEP or all"
            )
        try:
            lo, hi = pd.Timestamp(start_s), pd.Timestamp(end_s)
        except ValueError as exc:
            raise ConfigError(f"--windows {item!r}: {exc}") from None
        if hi < lo:
            raise ConfigError(f"--windows {item!r}: END is before START")
        out.append(Window(start_s, end_s))
    return out


def _offset(text: str, whole: str) -> Any:
    import pandas as pd

    m = _SPAN.match(text.strip())
    if m is None or int(m.group(1)) == 0:
        raise ConfigError(f"--windows {whole!r}: {text!r} is not a span like 3y, 6m or 30d")
    n, unit = int(m.group(1)), m.group(2)
    if unit == "y":
        return pd.DateOffset(years=n)
    return pd.DateOffset(months=n) if unit == "m" else pd.DateOffset(days=n)


# --- points -----------------------------------------------------------------------------------
def grid_points(
    grid: dict[str, list[Value]],
    where: Callable[[dict[str, Value]], bool],
    *,
    random: int | None,
    seed: int,
    max_points: int,
) -> list[dict[str, Value]]:
    """The parameter points: the whole grid, or ``random`` of it drawn with ``seed``, after
    the constraint. Refuses an empty result and more than ``max_points``."""
    names = list(grid)
    size = math.prod(len(v) for v in grid.values())
    if random is not None:
        if random < 1:
            raise ConfigError(f"--random must be at least 1, was {random}")
        if size > 50_000_000:
            raise ConfigError(f"the grid has {size:,} points: too many to draw from; narrow it")
    elif size > max_points * 20:
        raise ConfigError(
            f"the grid has {size:,} points before --where, more than --max-points "
            f"{max_points:,}; narrow the grid or raise --max-points"
        )
    points = [
        p for p in (dict(zip(names, combo, strict=True))
                    for combo in itertools.product(*grid.values())) if where(p)
    ]  # fmt: skip
    if not points:
        raise ConfigError("the grid is empty after --where: no point satisfies the constraint")
    if random is not None and random < len(points):
        chosen = np.random.default_rng(seed).choice(len(points), size=random, replace=False)
        points = [points[i] for i in sorted(chosen)]
    return points


def point_id(strategy: str, params: dict[str, Value], data_hash: str, window: Window,
             config_hash: str) -> str:  # fmt: skip
    """The id of a point: a hash of everything its result depends on."""
    canonical = json.dumps(
        [strategy, sorted(params.items()), data_hash, window.label, config_hash],
        separators=(",", ":"),
    )
    return hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()


def config_hash(config: Any) -> str:
    """Hash of an ``EngineConfig`` (its JSON dump)."""
    dumped = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(dumped.encode(), digest_size=12).hexdigest()
