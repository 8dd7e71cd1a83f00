"""Human-readable CLI output (rich tables and progress bars), kept apart from the commands."""

from __future__ import annotations

import atexit
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from ultrathink.core.times import iso_ns
from ultrathink.engine.results import RunResult
from ultrathink.persistence import RunRecord

if TYPE_CHECKING:
    import pandas as pd

_PROGRESS_MIN_BARS = 100_000


def _console(file: Any = None) -> Console:
    # piped output (files, CI logs) gets a fixed, wide layout instead of 80 columns
    stream = file if file is not None else sys.stdout
    return Console(file=file, soft_wrap=True, width=None if stream.isatty() else 140)


def progress_callback(total: int) -> Callable[[int], None] | None:
    """A progress bar for long runs on an interactive terminal (else None); it disappears
    when the run reports its last bar."""
    if total < _PROGRESS_MIN_BARS or not sys.stderr.isatty():
        return None
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("bars"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=Console(stderr=True), transient=True)
    task = progress.add_task("run", total=total)
    progress.start()
    atexit.register(progress.stop)

    def update(n: int) -> None:
        progress.update(task, completed=n)
        if n >= total:
            progress.stop()

    return update


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1e6 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_summary(result: RunResult, report: Path | None) -> None:
    """Summary table of a run."""
    m = result.metrics
    table = Table(
        title=f"{result.mode}: {result.strategy} on {result.data_name}", show_header=False
    )
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [
        ("run id", result.run_id if result.run_id is not None else "not stored"),
        ("params", _params_text(result.params)),
        ("bars", result.n_bars),
        ("bars/s (full path)", round(result.bars_per_s)),
        ("start equity", m.start_equity),
        ("final equity", m.final_equity),
        ("total return", f"{m.total_return:.2%}"),
        ("CAGR", f"{m.cagr:.2%}"),
        ("annual volatility", f"{m.annual_volatility:.2%}"),
        ("Sharpe", m.sharpe),
        ("Sortino", m.sortino),
        ("max drawdown", f"{m.max_drawdown:.2%}"),
        ("max DD duration (days)", round(m.max_drawdown_duration_days, 1)),
        ("closed trades", m.n_trades),
        ("win rate", f"{m.win_rate:.2%}"),
        ("profit factor", m.profit_factor),
        ("exposure", f"{m.exposure:.2%}"),
        ("turnover (x avg equity)", m.turnover),
        ("fees", m.total_fees),
        ("orders", ", ".join(f"{k} {v}" for k, v in result.order_counts.items()) or "none"),
    ]
    if result.denial_reasons:
        rows.append(("denials", ", ".join(f"{k} {v}" for k, v in result.denial_reasons.items())))
    for symbol, reasons in result.repeated_denials.items():
        text = ", ".join(f"{code} x{n:,}" for code, n in reasons.items())
        rows.append((f"REPEATED denials {symbol}", f"{text} (see Strategy.on_order_denied)"))
    if result.capped_buys:
        rows.append(("buys cut to available cash", result.capped_buys))
    if result.trading_state != "ACTIVE":
        rows.append(("trading state", f"{result.trading_state}: {result.trading_state_reason}"))
    if result.recovery is not None:
        r = result.recovery
        rows.append(("restart replayed", (
            f"{r['replayed_bars']:,} bars, {r['replayed_inputs']} inputs; venue "
            f"{r['venue_records_on_disk']:,} records verified, {r['venue_records_written']} "
            f"written; store {r['store_records_written']:,} records written"
        )))  # fmt: skip
    if result.hardening_events:
        breakers = [e for e in result.hardening_events if e["kind"] == "breaker"]
        rows.append(("hardening events", f"{len(result.hardening_events)} "
                                         f"({len(breakers)} breaker transitions)"))  # fmt: skip
    rows += _strategy_rows(result)
    if report is not None:
        rows.append(("report", str(report)))
    for key, value in rows:
        table.add_row(key, _fmt(value))
    _console().print(table)


def _params_text(params: dict[str, Any]) -> str:
    items = [f"{k}={v}" for k, v in params.items()]
    text = ", ".join(items)
    return text if len(text) <= 60 else "\n".join(items)  # one per line when long


def _strategy_rows(result: RunResult) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    stats = result.strategy_stats
    if stats.get("model_version"):
        rows.append(("model", stats["model_version"]))
        rows.append(("predictions", stats.get("n_predictions", 0)))
        holds = stats.get("holds") or {}
        rows.append(("holds", ", ".join(f"{k} {v}" for k, v in holds.items()) or "none"))
        in_sample = stats.get("in_sample_bars", 0)
        rows.append(("IN-SAMPLE bars" if in_sample else "in-sample bars", in_sample))
        remote = stats.get("remote")
        if remote:
            rows.append(("model server", _remote_text(remote)))
    lat = result.latency_us
    if lat:
        rows.append(("decision latency p50 / p99 (µs)", f"{lat['p50']:.1f} / {lat['p99']:.1f}"))
        rows.append(("decision latency p99.9 / max (µs)", f"{lat['p99.9']:.1f} / {lat['max']:.1f}"))
    return rows


def _remote_text(remote: dict[str, Any]) -> str:
    # --model-url: who answered, and every fallback to the local model by reason
    answered = ", ".join(f"{v} {n:,}" for v, n in remote["versions_answered"].items())
    fallbacks = ", ".join(f"{k} {n:,}" for k, n in remote["by_reason"].items())
    return (
        f"{remote['answered']:,} of {remote['requests']:,} answered ({answered or 'none'})\n"
        f"local fallbacks {remote['fallbacks']:,}{f' ({fallbacks})' if fallbacks else ''}\n"
        f"timeout {remote['timeout_ms']:g} ms, breaker {remote['breaker']['state']}"
    )


def print_frame(frame: pd.DataFrame, title: str) -> None:
    """A DataFrame as a rich table."""
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="left" if frame[col].dtype == object else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    _console().print(table)


def _run_json(record: RunRecord) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(record), default=str))


def print_runs(runs: list[RunRecord], *, as_json: bool) -> None:
    """The runs list."""
    if as_json:
        print(json.dumps([_run_json(r) for r in runs], indent=1))
        return
    table = Table(title="runs (newest first)")
    for col in ("id", "kind", "strategy", "data", "status", "started", "bars", "return", "trades"):
        table.add_column(col)
    for r in runs:
        s = r.summary or {}
        started = iso_ns(r.started_ns)[:19].replace("T", " ")
        ret = s.get("total_return")
        table.add_row(
            str(r.run_id), r.kind, r.strategy, r.data_name, r.status, started,
            _fmt(s.get("n_bars", "")), f"{ret:.2%}" if isinstance(ret, float) else "",
            _fmt(s.get("n_trades", "")),
        )  # fmt: skip
    _console().print(table)


def print_run(info: dict[str, Any], *, as_json: bool) -> None:
    """One run in detail."""
    record: RunRecord = info["run"]
    if as_json:
        out = {
            **info,
            "run": _run_json(record),
            "positions": [p._asdict() for p in info["positions"]],
        }
        print(json.dumps(out, indent=1, default=str))
        return
    table = Table(title=f"run {record.run_id}: {record.kind} {record.strategy}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    summary = record.summary or {}
    for key, value in (
        ("status", record.status), ("data", record.data_name),
        ("data sha256", record.data_hash[:16]), ("code", record.code_version),
        ("params", json.dumps(record.params)), ("orders", json.dumps(info["orders"])),
        ("fills", info["n_fills"]), ("equity points", info["n_equity_points"]),
        ("final equity", info["final_equity"]),
        ("total return", summary.get("total_return")),
        ("max drawdown", summary.get("max_drawdown")),
        ("positions", ", ".join(f"{p.symbol} {p.quantity:g}" for p in info["positions"]) or "flat"),
    ):  # fmt: skip
        table.add_row(key, _fmt(value))
    _console().print(table)


def print_walk_forward(result: Any, file: Any = None) -> None:
    """The out-of-sample walk-forward table of a training run."""
    report = result.report
    table = Table(title=f"walk-forward (purged), model {result.version}, out-of-sample only")
    cols = ("fold", "train", "test", "AUC", "log loss", "accuracy", "majority acc",
            "majority logloss", "Sharpe", "buy&hold Sharpe")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="right")
    for fold in [*report.folds, report.overall]:
        table.add_row(
            fold.name, _fmt(fold.n_train), _fmt(fold.n_test), f"{fold.auc:.3f}",
            f"{fold.log_loss:.4f}", f"{fold.accuracy:.3f}", f"{fold.baseline_accuracy:.3f}",
            f"{fold.baseline_log_loss:.4f}", f"{fold.sharpe:.2f}", f"{fold.buy_hold_sharpe:.2f}",
        )  # fmt: skip
    _console(file).print(table)


def print_models(infos: list[Any], production: str | None, *, as_json: bool) -> None:
    """The model registry's versions."""
    if as_json:
        rows = [{**asdict(i), "production": i.version == production} for i in infos]
        print(json.dumps(rows, indent=1, default=str))
        return
    table = Table(title="model registry")
    for col in ("version", "prod", "created", "symbol", "train period", "rows", "OOS AUC"):
        table.add_column(col)
    for info in infos:
        overall = (info.metrics or {}).get("overall", {})
        start, end = (iso_ns(t)[:10] for t in info.train_period)
        table.add_row(
            info.version, "*" if info.version == production else "", info.created[:19],
            str((info.extra or {}).get("symbol", "")), f"{start}..{end}",
            _fmt((info.extra or {}).get("n_rows", "")), f"{overall.get('auc', float('nan')):.3f}",
        )  # fmt: skip
    _console().print(table)


def print_model(info: Any, *, as_json: bool) -> None:
    """One model version's metadata."""
    data = asdict(info)
    if as_json:
        print(json.dumps(data, indent=1, default=str))
        return
    extra = dict(data.pop("extra") or {})
    for key in ("low", "high"):
        extra.pop(key, None)  # per-feature training ranges: in --json
    table = Table(title=f"model {info.version}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    data["train_period"] = " .. ".join(iso_ns(t) for t in info.train_period)
    data["metrics"] = (info.metrics or {}).get("overall", info.metrics)
    lineage = extra.pop("lineage", None)
    for key, value in {**data, **extra}.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value, default=str))
    if lineage:  # where a version came from: optimize model, features select, compress
        flat = {k: v for k, v in lineage.items() if not isinstance(v, dict | list)}
        table.add_row("lineage", ", ".join(f"{k} {v}" for k, v in flat.items()))
        for key, value in lineage.items():
            if key not in flat:
                table.add_row(f"lineage {key}", json.dumps(value, default=str))
    _console().print(table)
