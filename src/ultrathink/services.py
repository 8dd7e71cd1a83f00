"""The operations the CLI (and later the web) call: thin, typed, no printing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ultrathink.config import default_db_path, load_engine_config, realistic_defaults
from ultrathink.core.times import iso_ns
from ultrathink.data import MarketData, load_data
from ultrathink.data.synthetic import generate, parse_synthetic_spec
from ultrathink.decision.loader import resolve_strategy
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.kernel import ProgressFn
from ultrathink.engine.results import RunResult
from ultrathink.engine.runner import RunSpec, run
from ultrathink.errors import ConfigError, DataSourceError
from ultrathink.persistence import AuditReport, RunRecord, Store, verify_audit

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_STRATEGY = "sma_cross"


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """Turn ``["fast=10", "slow=30"]`` into a dict; values are validated by the strategy."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects KEY=VALUE, was {item!r} (e.g. --param fast=10)")
        params[key.strip()] = value.strip()
    return params


def make_strategy(spec: str, params: dict[str, Any]) -> Strategy:
    """Instantiate the strategy named by ``spec`` with ``params`` (validated)."""
    return resolve_strategy(spec)(**params)


def engine_config(
    *,
    realistic: bool,
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> EngineConfig:
    """Config for a run: zero-cost defaults (backtest) or realistic ones (paper/run)."""
    base = realistic_defaults() if realistic else {}
    return load_engine_config(config_path, base=base, overrides=overrides)


def slice_data(data: MarketData, start: str | None, end: str | None) -> MarketData:
    """Restrict ``data`` to ``[start, end]`` (ISO dates or timestamps, UTC)."""
    if start is None and end is None:
        return data
    import pandas as pd  # lazy: only when slicing by date

    try:
        lo = int(pd.Timestamp(start, tz="UTC").value) if start else None
        hi = int(pd.Timestamp(end, tz="UTC").value) if end else None
    except ValueError as exc:
        raise ConfigError(f"--start/--end must be dates like 2005-01-31: {exc}") from None
    if hi is not None and end and len(end) <= 10:
        hi += 86_400_000_000_000 - 1  # an end date includes that whole day
    out = data.between(lo, hi)
    if len(out) == 0:
        raise ConfigError(f"no bars of {data.name} between {start} and {end}")
    return out


def run_strategy(
    strategy: Strategy,
    data: MarketData,
    config: EngineConfig,
    *,
    mode: str = "backtest",
    db_path: Path | None = None,
    progress: ProgressFn | None = None,
    resume_run_id: int | None = None,
) -> RunResult:
    """Run ``strategy`` over ``data`` (backtest or paper) and persist it when ``db_path``.

    ``resume_run_id`` continues that stored paper run after a crash (same data).
    """
    if len(data) == 0:
        raise DataSourceError(f"data {data.name!r} has no bars")
    return run(RunSpec(strategy, data, config, mode, db_path, resume_run_id), progress)


def resumable_run(
    db_path: Path,
    run_id: int,
    *,
    strategy_spec: str | None = None,
    data_spec: str | None = None,
    start: str | None = None,
    end: str | None = None,
    control: dict[str, Any] | None = None,
    registry: str | None = None,
    speed: Any = None,
) -> tuple[Strategy, MarketData, EngineConfig]:
    """Strategy, data and config of a stored paper run, to resume it after a crash.

    The stored strategy name, parameters, data name and configuration are used unless a
    strategy file or data spec is given again (a user strategy from a file, sliced data).
    """
    if not db_path.exists():
        raise ConfigError(f"store {db_path} does not exist; pass the --db the run used")
    with Store(db_path) as store:
        record = store.get_run(run_id)
    values = dict(record.config)
    if control is not None:
        values["control"] = control
    if speed is not None:  # "max" arrives as 0: as fast as possible
        values["speed"] = speed or None
    config = EngineConfig(**values)
    strategy = make_strategy(strategy_spec or record.strategy, dict(record.params))
    attach_model_if_needed(strategy, registry, db_path)
    name = data_spec or record.data_name.removeprefix("embedded:")
    return strategy, slice_data(load(name), start, end), config


def attach_model_if_needed(
    strategy: Strategy, registry: str | Path | None, db: str | Path | None
) -> bool:
    """Give the ``ml`` strategy its verified, compiled model; False for other strategies."""
    if not hasattr(strategy, "attach_model"):
        return False
    version = getattr(strategy.params, "model", None)
    strategy.attach_model(load_model_bundle(registry_root(registry, db), version))
    return True


def resolve_db(path: str | Path | None) -> Path:
    """The store path: explicit, else the configured default."""
    return Path(path) if path else default_db_path()


def list_runs(db_path: Path, limit: int = 20) -> list[RunRecord]:
    """Newest runs first."""
    with Store(db_path) as store:
        return store.list_runs(limit)


def show_run(db_path: Path, run_id: int) -> dict[str, Any]:
    """One run with its order status counts, positions and equity summary."""
    with Store(db_path) as store:
        record = store.get_run(run_id)
        ts, equity, _cash = store.load_equity(run_id)
        return {
            "run": record,
            "orders": store.order_status_counts(run_id),
            "positions": store.load_positions(run_id),
            "n_fills": store.count_fills(run_id),
            "n_equity_points": int(ts.size),
            "final_equity": float(equity[-1]) if equity.size else None,
        }


def audit_verify(db_path: Path) -> AuditReport:
    """Verify the hash chain of the store's audit log."""
    if not db_path.exists():
        raise ConfigError(f"store {db_path} does not exist; run a backtest first or pass --db")
    return verify_audit(db_path)


def inspect_data(data: MarketData) -> pd.DataFrame:
    """Per-symbol summary: bars, first/last timestamp, price range, mean volume."""
    import pandas as pd  # lazy: see data/frame.py

    rows = []
    for i, symbol in enumerate(data.symbols):
        mask = data.symbol_idx == i
        ts = data.ts_ns[mask]
        rows.append(
            {
                "symbol": symbol,
                "bars": int(mask.sum()),
                "first": iso_ns(int(ts[0])),
                "last": iso_ns(int(ts[-1])),
                "min_low": float(data.low[mask].min()),
                "max_high": float(data.high[mask].max()),
                "last_close": float(data.close[mask][-1]),
                "mean_volume": float(np.mean(data.volume[mask])),
            }
        )
    return pd.DataFrame(rows)


def load(spec: str) -> MarketData:
    """Load data from a spec (``sp500``, ``nasdaq``, ``synthetic:...``, or a file path)."""
    return load_data(spec)


def generate_data(spec: str, out: Path) -> MarketData:
    """Generate synthetic data from ``spec`` and write it to ``out`` (.csv or .parquet)."""
    from ultrathink.data.loaders import save_csv, save_parquet  # lazy: pandas/pyarrow

    data = generate(
        parse_synthetic_spec(spec if spec.startswith("synthetic") else f"synthetic:{spec}")
    )
    suffix = "".join(out.suffixes[-2:]) if out.suffix == ".gz" else out.suffix
    if suffix in (".parquet", ".pq"):
        save_parquet(data, out)
    elif suffix in (".csv", ".csv.gz"):
        save_csv(data, out)
    else:
        raise ConfigError(f"--out must end in .csv, .csv.gz or .parquet, was {out}")
    return data


# -- ML: training, registry, the ml strategy ----------------------------------------------------


def registry_root(path: str | Path | None, db: str | Path | None = None) -> Path:
    """The model registry: explicit, else ``models/`` next to the store (``db`` or default)."""
    if path:
        return Path(path)
    return (Path(db) if db else default_db_path()).parent / "models"


_TRAIN_OPTIONS = {
    "n_folds": "--folds", "horizon": "--horizon", "dead_zone_bps": "--dead-zone-bps",
    "embargo": "--embargo", "features": "--features", "members": "--members",
}  # fmt: skip


def train_model(
    data: MarketData, config: dict[str, Any], registry: Path, report_dir: Path | None = None
) -> tuple[Any, tuple[Path, Path]]:
    """Train, register and report a model; returns (TrainResult, (html, md) report paths)."""
    from pydantic import ValidationError

    from ultrathink.models.pipeline import TrainConfig, train, write_reports
    from ultrathink.models.registry import ModelRegistry

    try:
        cfg = TrainConfig(**config)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        option = _TRAIN_OPTIONS.get(key, key)
        raise ConfigError(
            f"training option {option}: {err['msg'].lower()}, was {err.get('input')!r}"
        ) from None
    result = train(data, cfg, ModelRegistry(registry))
    paths = write_reports(result, report_dir or registry / "reports")
    return result, paths


def model_registry(path: Path) -> Any:
    """The ``ModelRegistry`` at ``path``."""
    from ultrathink.models.registry import ModelRegistry

    return ModelRegistry(path)


def load_model_bundle(registry: Path, version: str | None) -> Any:
    """Verify, load and compile a registered model for the ``ml`` strategy."""
    import numpy as np

    from ultrathink.decision.ml import ModelBundle
    from ultrathink.features.spec import FEATURE_NAMES
    from ultrathink.models.compiled import CompiledEnsemble
    from ultrathink.models.registry import ModelRegistry

    loaded = ModelRegistry(registry).load(version)
    info = loaded.info
    compiled = CompiledEnsemble.from_ensemble(loaded.model)
    compiled.warmup()
    extra = info.extra or {}
    return ModelBundle(
        version=info.version,
        predict_row=compiled.predict_row,
        feature_index=np.array([FEATURE_NAMES.index(n) for n in info.feature_names]),
        feature_names=list(info.feature_names),
        low=np.asarray(extra["low"], dtype=np.float64),
        high=np.asarray(extra["high"], dtype=np.float64),
        train_start_ns=int(info.train_period[0]),
        train_end_ns=int(info.train_period[1]),
        periods_per_year=float(extra.get("periods_per_year", 252.0)),
        extra=extra,
        members=_member_chain(compiled),
    )


def _member_chain(compiled: Any) -> tuple[tuple[str, Any], ...]:
    # the ML strategy's fallback after the ensemble: each weighted member on its own
    def member(i: int) -> Any:
        return lambda x: float(compiled.predict_members(x[None, :])[0, i])

    names = ("gbm", "forest", "linear")
    return tuple((n, member(i)) for i, n in enumerate(names) if compiled.weights[i] > 0)
