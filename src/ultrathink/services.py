"""The operations the CLI and the web call: thin, typed, no printing.

A run is asked for with a typed ``RunRequest`` (backtest, paper, the main job and a resume
all use it) and executed by ``execute_run``, which also serves a paper session's control
endpoint and turns Ctrl-C into a clean stop.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ultrathink.config import (
    default_db_path,
    engine_config_from_values,
    load_engine_config,
    realistic_defaults,
)
from ultrathink.core.times import iso_ns
from ultrathink.data import MarketData, load_data
from ultrathink.decision.loader import resolve_strategy
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.feed_bars import FEED_PREFIX, FeedBars
from ultrathink.engine.kernel import ProgressFn
from ultrathink.engine.results import RunResult
from ultrathink.engine.runner import Session, run
from ultrathink.engine.spec import ProfilerFactory, RunSpec
from ultrathink.errors import ConfigError, DataSourceError

if TYPE_CHECKING:
    import pandas as pd

    from ultrathink.persistence import AuditReport, RunRecord

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
    other_tables: tuple[str, ...] = (),
) -> EngineConfig:
    """Config for a run: zero-cost defaults (backtest) or realistic ones (paper/run).

    ``other_tables`` of the TOML file belong to the command, not the engine (``[space]``).
    """
    base = realistic_defaults() if realistic else {}
    return load_engine_config(
        config_path, base=base, overrides=overrides, other_tables=other_tables
    )


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
    profiler: ProfilerFactory | None = None,
) -> RunResult:
    """Run ``strategy`` over ``data`` (backtest or paper) and persist it when ``db_path``.

    ``resume_run_id`` continues that stored paper run after a crash (same data);
    ``profiler`` profiles the run (``ProfileSession.profiler_for``).
    """
    if len(data) == 0:
        raise DataSourceError(f"data {data.name!r} has no bars")
    spec = RunSpec(strategy, data, config, mode, db_path, resume_run_id, profiler=profiler)
    return run(spec, progress)


# -- typed run requests ----------------------------------------------------------------------

Mode = Literal["backtest", "paper", "run"]


class RunRequest(BaseModel):
    """One run, as a caller asks for it: ``backtest``, ``paper`` (or its ``resume``) or the
    main job ``run``. Validated before anything runs; ``execute_run`` carries it out.

    ``overrides`` are configuration values (nested dicts, e.g. ``{"broker":
    {"commission_bps": 1.0}}``) applied over the mode's defaults and the ``config`` file.
    ``speed`` is a multiple of real time or ``"max"``; None keeps the default (paper: 60,
    a resumed run: its own). ``model_url`` makes the ``ml`` strategy ask that model server
    first, within ``model_timeout_ms`` (default: ``serving.client.decision_timeout_ms``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode
    strategy: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    registry: str | None = None
    data: str | None = None
    start: str | None = None
    end: str | None = None
    config_path: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    db: str | None = None
    store: bool = True
    report: str | None = None
    resume: int | None = None
    control: bool = False
    #: serve the live dashboard of this paper session on this port (None: no dashboard)
    dashboard_port: int | None = Field(default=None, ge=0, le=65535)
    speed: float | Literal["max"] | None = None
    #: trade the bars of this live feed (``tcp://HOST:PORT[,tcp://HOST:PORT]``) instead of
    #: replaying ``data``; ``symbols`` (comma-separated) are the session's symbols
    feed: str | None = None
    symbols: str | None = None
    model_url: str | None = None
    model_timeout_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)


#: The pace of a new paper session unless --speed is given (x real time).
DEFAULT_PAPER_SPEED = 60.0


def execute_run(
    request: RunRequest,
    *,
    progress: Callable[[int], Callable[[int], None] | None] | None = None,
    profiler: ProfilerFactory | None = None,
    on_ready: Callable[[Session], None] | None = None,
) -> RunResult:
    """Carry out ``request``: resolve config, strategy, model and data, then run it.

    A paper session with ``control`` serves its control endpoint while it runs (loopback,
    token in its session directory); Ctrl-C (SIGINT) asks the kernel to stop at the next
    bar, so the run ends ``interrupted`` with everything stored (a second Ctrl-C aborts).
    ``progress(total)`` may return a per-bar callback; ``on_ready(session)`` is called once
    the session is open (its control endpoint serving).
    """
    if request.report:
        check_output_path(request.report, "--report")
    if request.dashboard_port is not None:
        from ultrathink.web.dashboard_child import check_port_free

        check_port_free("127.0.0.1", request.dashboard_port)
    spec = _spec(request, profiler)
    with (
        _remote_closed(spec.strategy),
        Session(spec).open() as session,
        _control_server(request, session),
        _dashboard(request, session),
        _graceful_sigint(session),
    ):
        if on_ready is not None:
            on_ready(session)
        live = isinstance(spec.data, FeedBars)
        callback = progress(len(spec.data)) if progress is not None and not live else None
        return session.run(callback)


def _spec(request: RunRequest, profiler: ProfilerFactory | None) -> RunSpec:
    db = resolve_db(request.db) if request.store else None
    data: MarketData | FeedBars
    if request.resume is not None:
        if db is None:
            raise ConfigError("--resume needs the store the run was written to (drop --no-store)")
        strategy, data, config = _resumable(request, db)
        mode = "paper"
    else:
        config = engine_config(
            realistic=request.mode != "backtest", config_path=request.config_path,
            overrides=_with_speed(request),
        )  # fmt: skip
        params: dict[str, Any] = dict(request.params)
        if request.model:
            params["model"] = request.model
        strategy = make_strategy(request.strategy or DEFAULT_STRATEGY, params)
        if attach_model_if_needed(
            strategy, request.registry, request.db, **_remote(request, config)
        ):
            config = config.model_copy(update={"measure_latency": True})
        data = _data(request, config)
        mode = request.mode
    if isinstance(data, FeedBars):
        config = config.model_copy(update={"speed": None})  # the feed is the pace
    elif len(data) == 0:
        raise DataSourceError(f"data {data.name!r} has no bars")
    if request.dashboard_port is not None and not config.measure_latency:
        # the live page draws the decision latency; timing costs two clock reads a bar
        config = config.model_copy(update={"measure_latency": True})
    if request.dashboard_port is not None and profiler is None:
        # the live page draws per-stage latency: a profiler sampling about 2 bars a second
        from ultrathink.perf.profiler import live_profiler

        profiler = live_profiler
    return RunSpec(strategy, data, config, mode, db, request.resume, profiler=profiler)


def _remote(request: RunRequest, config: EngineConfig) -> dict[str, Any]:
    # --model-url and its timeout (the rule: serving.client.decision_timeout_ms)
    if request.model_url is None:
        return {}
    from ultrathink.hardening.degraded import DegradedConfig
    from ultrathink.serving.client import decision_timeout_ms

    budget_ms = (config.hardening.degraded or DegradedConfig()).latency_enter_ms
    timeout_ms = decision_timeout_ms(budget_ms, request.model_timeout_ms)
    return {"model_url": request.model_url, "model_timeout_ms": timeout_ms}


@contextmanager
def _remote_closed(strategy: Strategy) -> Iterator[None]:
    # the model server connection is closed however the run ends
    try:
        yield
    finally:
        remote = getattr(getattr(strategy, "bundle", None), "remote", None)
        if remote is not None:
            remote.close()


def _with_speed(request: RunRequest) -> dict[str, Any]:
    overrides = dict(request.overrides)
    if request.control:
        overrides["control"] = {"enabled": True}
    if request.mode == "paper":
        speed = request.speed if request.speed is not None else DEFAULT_PAPER_SPEED
        overrides["speed"] = None if speed == "max" else speed
    return overrides


def _resumable(
    request: RunRequest, db_path: Path
) -> tuple[Strategy, MarketData | FeedBars, EngineConfig]:
    # the stored run's strategy, parameters, data and configuration, unless given again
    from ultrathink.persistence import Store

    if not db_path.exists():
        raise ConfigError(f"store {db_path} does not exist; pass the --db the run used")
    with Store(db_path) as store:
        record = store.get_run(request.resume or 0)
    values = dict(record.config)
    values["control"] = {"enabled": request.control}
    if request.speed is not None:
        values["speed"] = None if request.speed == "max" else request.speed
    config = engine_config_from_values(values, f"the stored config of run {request.resume}")
    strategy = make_strategy(request.strategy or record.strategy, dict(record.params))
    attach_model_if_needed(strategy, request.registry, db_path, **_remote(request, config))
    if record.data_name.startswith(FEED_PREFIX):
        if request.feed is None:
            raise ConfigError(
                f"run {request.resume} traded a live feed ({record.data_name}): pass --feed "
                "URL to resume it"
            )
        if request.speed is not None:
            raise ConfigError("--speed is for a replay; a --feed session trades the feed live")
        symbols = record.data_name.removeprefix(FEED_PREFIX)
        return strategy, _feed_bars(request, symbols, config), config
    if request.feed is not None:
        raise ConfigError(f"run {request.resume} replayed {record.data_name}; drop --feed")
    name = request.data or record.data_name.removeprefix("embedded:")
    return strategy, slice_data(load(name), request.start, request.end), config


def _data(request: RunRequest, config: EngineConfig) -> MarketData | FeedBars:
    # the bars of a new run: stored data, or a paper session's live feed
    if request.feed is None:
        if request.symbols is not None:
            raise ConfigError("--symbols names a live feed's symbols: it needs --feed")
        return slice_data(load(request.data or "sp500"), request.start, request.end)
    if request.mode != "paper":
        raise ConfigError("--feed is for paper sessions")
    for given, flag in ((request.data, "--data"), (request.start, "--start"),
                        (request.end, "--end"), (request.speed, "--speed")):  # fmt: skip
        if given is not None:
            raise ConfigError(f"{flag} is for a replay; a --feed session trades the feed live")
    if not request.symbols:
        raise ConfigError("--feed needs the session's symbols: --symbols SPY[,QQQ...]")
    return _feed_bars(request, request.symbols, config)


def _feed_bars(request: RunRequest, symbols: str, config: EngineConfig) -> FeedBars:
    assert request.feed is not None
    feed = config.feed
    return FeedBars(
        request.feed, symbols.split(","), config=feed.client, group_wait_s=feed.group_wait_s,
        stale_s=feed.stale_s, max_age_s=feed.max_bar_age_s, reader=feed.reader,
    )  # fmt: skip


def check_output_path(path: str, option: str) -> Path:
    """Refuse, before anything runs, an output file that could not be written."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{option} {path} is a directory; pass a file path, e.g. report.html")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{option} {path}: {parent} is not a directory")
    probe = parent if parent.exists() else next((p for p in parent.parents if p.exists()), None)
    if probe is None or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {probe or parent} is not writable")
    if out.exists() and not os.access(out, os.W_OK):
        raise ConfigError(f"{option} {path} exists and is not writable")
    return out


@contextmanager
def _control_server(request: RunRequest, session: Session) -> Iterator[None]:
    # the operator endpoint on 127.0.0.1 (token in the session's 0600 control file)
    control = session.engine.control
    if not request.control or control is None:
        yield
        return
    from ultrathink.engine.sessions import CONTROL_FILE_NAME, NOSTORE_PREFIX, RunLock, sessions_root
    from ultrathink.web.control_api import ControlServer

    directory, lock = session.directory, None
    if directory is None:  # not stored: a session directory of its own, locked while it runs
        directory = sessions_root(resolve_db(request.db)) / f"{NOSTORE_PREFIX}{os.getpid()}"
        lock = RunLock(directory, None).acquire()
    cfg = session.spec.config.control
    path = Path(cfg.session_file) if cfg.session_file else directory / CONTROL_FILE_NAME
    server = ControlServer(control, port=cfg.port, session_file=path)
    spec = session.spec
    info = {"run_id": session.run_id, "mode": spec.mode, "strategy": spec.strategy.name}
    try:
        server.start(extra={**info, "db": str(spec.db_path or "")})
        yield
    finally:
        server.stop()
        if lock is not None:
            lock.release()


@contextmanager
def _dashboard(request: RunRequest, session: Session) -> Iterator[None]:
    # the live page in a process of its own: whatever happens to it, the session goes on
    if request.dashboard_port is None or session.engine.control is None:
        yield
        return
    from ultrathink.perf.profiler import attach_live_stages
    from ultrathink.web.dashboard_child import DashboardChild

    attach_live_stages(session.engine)  # the snapshots carry the profiler's stage latencies
    child = DashboardChild(resolve_db(request.db), request.dashboard_port, session.run_id)
    child.start()
    try:
        yield
    finally:
        child.stop()


@contextmanager
def _graceful_sigint(session: Session) -> Iterator[None]:
    # first Ctrl-C: stop at the next bar (everything stored, status interrupted);
    # second: KeyboardInterrupt as usual. Only a paper session needs it, in the main thread.
    if session.spec.mode != "paper" or threading.current_thread() is not threading.main_thread():
        yield
        return
    stop = session.stop

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        print("stopping at the next bar (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def attach_model_if_needed(
    strategy: Strategy,
    registry: str | Path | None,
    db: str | Path | None,
    *,
    model_url: str | None = None,
    model_timeout_ms: float | None = None,
) -> bool:
    """Give the ``ml`` strategy its verified, compiled model; False for other strategies.

    With ``model_url`` the strategy asks that model server first (``remote_model_bundle``),
    within ``model_timeout_ms`` (default: the rule of ``serving.client.decision_timeout_ms``
    on the default decision budget).
    """
    if not hasattr(strategy, "attach_model"):
        if model_url is not None:
            raise ConfigError(
                f"--model-url serves the ml strategy's model; this run's strategy is "
                f"{strategy.name!r} (pass --strategy ml, or drop --model-url)"
            )
        return False
    version = getattr(strategy.params, "model", None)
    root = registry_root(registry, db)
    if model_url is None:
        strategy.attach_model(load_model_bundle(root, version))
    else:
        strategy.attach_model(remote_model_bundle(root, version, model_url, model_timeout_ms))
    return True


def remote_model_bundle(
    registry: Path, version: str | None, url: str, timeout_ms: float | None = None
) -> Any:
    """The ``ml`` strategy's model for ``--model-url``: the server first, the local compiled
    model of the same version as its fallback.

    The local version is ``version`` (``--model``) if given, else the server's primary from
    ``GET /v1/models``; a server unreachable now means ``version``, else production, else the
    latest, and the strategy keeps probing the server while it runs.
    """
    from ultrathink.hardening.degraded import DegradedConfig
    from ultrathink.models.registry import ModelNotFoundError
    from ultrathink.serving.client import (
        STARTUP_TIMEOUT_S,
        ModelServerClient,
        RemoteError,
        RemoteModel,
        decision_timeout_ms,
    )

    if timeout_ms is None:
        timeout_ms = decision_timeout_ms(DegradedConfig().latency_enter_ms)
    client = ModelServerClient(url, timeout_ms / 1000)
    try:
        catalog = client.catalog(STARTUP_TIMEOUT_S)
        startup = f"reachable; primary {catalog.primary}"
    except RemoteError as exc:
        catalog, startup = None, f"unreachable at start ({exc}); local model, probing"
    finally:
        client.close()  # the run opens it again: nothing is left open if it never starts
    local = version or (catalog.primary if catalog is not None else None)
    try:
        bundle = load_model_bundle(registry, local)
    except ModelNotFoundError as exc:
        if version is None and catalog is not None:
            raise ConfigError(
                f"the model server {url} serves {catalog.primary}, which this registry lacks "
                f"({exc}); pass the server's --registry, or --model VERSION"
            ) from None
        raise
    bundle.remote = RemoteModel(
        client, bundle.version, bundle.feature_names, catalog=catalog, startup=startup
    )
    return bundle


def resolve_db(path: str | Path | None) -> Path:
    """The store path: explicit, else the configured default."""
    return Path(path) if path else default_db_path()


def list_runs(db_path: Path, limit: int = 20) -> list[RunRecord]:
    """Newest runs first (the store is opened read-only; no store yet: no runs)."""
    from ultrathink.persistence import Store

    if not db_path.exists():
        return []
    with Store(db_path, readonly=True) as store:
        return store.list_runs(limit)


def show_run(db_path: Path, run_id: int) -> dict[str, Any]:
    """One run with its order status counts, positions and equity summary (read-only)."""
    from ultrathink.persistence import Store

    with Store(db_path, readonly=True) as store:
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


def audit_verify(db_path: Path, expect_head: str | None = None) -> AuditReport:
    """Verify the store's audit trail (chain and tables); ``expect_head`` anchors its head."""
    from ultrathink.persistence import verify_audit

    if not db_path.exists():
        raise ConfigError(f"store {db_path} does not exist; run a backtest first or pass --db")
    return verify_audit(db_path, expect_head=expect_head)


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
    from ultrathink.data.synthetic import generate, parse_synthetic_spec

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
    return resolve_db(db).parent / "models"


_TRAIN_OPTIONS = {
    "n_folds": "--folds", "horizon": "--horizon", "dead_zone_bps": "--dead-zone-bps",
    "embargo": "--embargo", "features": "--features", "members": "--members",
}  # fmt: skip


def train_model(
    data: MarketData,
    config: dict[str, Any],
    registry: Path,
    report_dir: Path | None = None,
    source: dict[str, Any] | None = None,
) -> tuple[Any, tuple[Path, Path]]:
    """Train, register and report a model; returns (TrainResult, (html, md) report paths).

    ``source`` (``data``, ``start``, ``end``, ``symbol``: the options that selected ``data``)
    is recorded with the version, so later tools can load the same rows again."""
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
    extra = {"source": source} if source is not None else None
    result = train(data, cfg, ModelRegistry(registry), extra=extra)
    paths = write_reports(result, report_dir or registry / "reports")
    return result, paths


def load_source(
    spec: str, start: str | None = None, end: str | None = None, symbol: str | None = None
) -> MarketData:
    """The rows ``--data SPEC --start --end --symbol`` select (as ``train`` selects them)."""
    data = slice_data(load(spec), start, end)
    return data.for_symbol(symbol) if symbol else data


def version_training_set(
    registry: Path,
    version: str | None,
    data: str | None = None,
    start: str | None = None,
    end: str | None = None,
    symbol: str | None = None,
) -> Any:
    """A registered version with the exact rows it was trained on (``TrainingSet``).

    The version is loaded with its hashes verified. Its data comes from the options given,
    else from the ``source`` it recorded (``train`` and ``optimize model`` record it), and
    must hash to the version's ``data_hash``: other data is a clear error, never a silent
    re-evaluation on different rows."""
    from ultrathink.models.pipeline import training_set
    from ultrathink.models.registry import ModelRegistry

    loaded = ModelRegistry(registry).load(version)
    info = loaded.info
    source = dict((info.extra or {}).get("source") or {})
    if data is not None:
        source = {"data": data, "start": start, "end": end, "symbol": symbol}
    if not source.get("data"):
        raise ConfigError(
            f"model {info.version} does not record its data; pass --data (and --start, "
            "--end, --symbol) as it was trained"
        )
    rows = load_source(source["data"], source.get("start"), source.get("end"), source.get("symbol"))
    if rows.sha256() != info.data_hash:
        raise ConfigError(
            f"the data {source['data']} (start {source.get('start')}, end {source.get('end')}) "
            f"is not the data model {info.version} was trained on (sha256 "
            f"{rows.sha256()[:12]}… vs {info.data_hash[:12]}…); pass the same --data, "
            "--start, --end and --symbol"
        )
    return training_set(loaded.model, info, rows)


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
