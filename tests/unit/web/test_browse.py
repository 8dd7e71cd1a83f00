"""The dashboard's data layer on real stores made by real runs: filters, pages, series,
audit, models and benchmark history (``ultrathink.web.browse``)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ultrathink.cli import main
from ultrathink.errors import ConfigError
from ultrathink.models.registry import ModelNotFoundError
from ultrathink.perf.results import append_results
from ultrathink.perf.suite import BenchResult
from ultrathink.web import browse

SMA_DATA = "synthetic:n_bars=3000,seed=4"
HOLD_DATA = "synthetic:n_bars=2000,seed=5"


def run_cli(*argv: str) -> dict[str, Any]:
    """``ultrathink ...`` in-process (module fixtures cannot use capsys); its JSON output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue()) if out.getvalue().lstrip().startswith("{") else {}


@dataclass(frozen=True)
class Store:
    db: Path
    summaries: dict[int, dict[str, Any]]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Run 1: sma_cross backtest; 2: buy_and_hold backtest on other data; 3: paper sma_cross."""
    db = tmp_path_factory.mktemp("browse") / "u.db"
    runs = (
        ("backtest", "--data", SMA_DATA),
        ("backtest", "--strategy", "buy_and_hold", "--data", HOLD_DATA),
        ("paper", "--speed", "max", "--data", SMA_DATA),
    )
    summaries = {}
    for argv in runs:
        summary = run_cli(*argv, "--json", "--db", str(db))
        summaries[summary["run_id"]] = summary
    return Store(db, summaries)


@pytest.fixture
def copy(store: Store, tmp_path: Path) -> Path:
    """A private copy of the store (tests tamper with it)."""
    for file in store.db.parent.glob(f"{store.db.name}*"):  # the db and its WAL files
        if file.is_file():
            shutil.copy(file, tmp_path / file.name)
    return tmp_path / store.db.name


def sql(db: Path, statement: str) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(statement)
        conn.commit()


def ids(page: dict[str, Any]) -> list[int]:
    return [row["run_id"] for row in page["rows"]]


def started_day(store: Store, run_id: int) -> str:
    detail = browse.run_detail(store.db, run_id)
    return str(detail["run"]["started"][:10])


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (browse.RunFilter(), [3, 2, 1]),
        (browse.RunFilter(strategy="sma_cross"), [3, 1]),
        (browse.RunFilter(kind="paper"), [3]),
        (browse.RunFilter(kind="backtest", strategy="buy_and_hold"), [2]),
        (browse.RunFilter(status="completed"), [3, 2, 1]),
        (browse.RunFilter(status="failed"), []),
        (browse.RunFilter(data_name=HOLD_DATA), [2]),
        (browse.RunFilter(strategy="nope"), []),
    ],
)
def test_runs_are_filtered_newest_first(store: Store, where, expected) -> None:
    listed = browse.list_runs(store.db, where)

    assert ids(listed) == expected
    assert listed["total"] == len(expected)


def test_the_date_range_bounds_the_start_day(store: Store) -> None:
    day = np.datetime64(started_day(store, 1))
    before, after = str(day - np.timedelta64(1, "D")), str(day + np.timedelta64(1, "D"))

    def listed(since: str | None, until: str | None) -> list[int]:
        since_ns, until_ns = browse.day_bounds_ns(since, until)
        return ids(browse.list_runs(store.db, browse.RunFilter(since_ns=since_ns,
                                                               until_ns=until_ns)))  # fmt: skip

    assert 1 in listed(str(day), str(day)) and 1 in listed(before, None)
    assert 1 not in listed(None, before) and 1 not in listed(after, None)


def test_pages_split_the_list(store: Store) -> None:
    first = browse.list_runs(store.db, browse.RunFilter(), page=1, limit=2)
    second = browse.list_runs(store.db, browse.RunFilter(), page=2, limit=2)
    beyond = browse.list_runs(store.db, browse.RunFilter(), page=3, limit=2)

    assert ids(first) == [3, 2] and ids(second) == [1] and ids(beyond) == []
    assert first["total"] == second["total"] == 3 and first["pages"] == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda db: browse.list_runs(db, browse.RunFilter(kind="live")), "mode must be one of"),
        (lambda db: browse.list_runs(db, browse.RunFilter(status="done")), "status must be one"),
        (lambda db: browse.list_runs(db, browse.RunFilter(), page=0), "page must be >= 1"),
        (lambda db: browse.list_runs(db, browse.RunFilter(), limit=501), "limit must be in"),
        (lambda db: browse.day_bounds_ns("2026-13-01", None), "since must be a real date"),
        (lambda db: browse.day_bounds_ns(None, "yesterday"), "until must be a date like"),
        (lambda db: browse.day_bounds_ns("2026-02-02", "2026-02-01"), "must not be after"),
    ],
)
def test_bad_filters_say_what_is_wrong(store: Store, call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(store.db)


def test_facets_list_the_values_in_the_store(store: Store) -> None:
    facets = browse.run_facets(store.db)

    assert facets["strategy"] == ["buy_and_hold", "sma_cross"]
    assert facets["data_name"] == sorted({SMA_DATA, HOLD_DATA})
    assert facets["kind"] == ["backtest", "paper"]


def test_run_detail_holds_the_summary_and_the_table_sizes(store: Store) -> None:
    summary = store.summaries[1]

    detail = browse.run_detail(store.db, 1)

    metrics = dict(detail["metrics"])
    assert metrics["sharpe"] == summary["metrics"]["sharpe"]
    assert metrics["n_bars"] == summary["n_bars"]
    assert detail["n_fills"] == summary["n_fills"] == detail["n_orders"]
    assert detail["n_equity_points"] == summary["n_bars"]
    assert detail["run"]["strategy"] == "sma_cross" and detail["run"]["status"] == "completed"


def test_a_missing_run_or_store_is_not_found(store: Store, tmp_path: Path) -> None:
    with pytest.raises(browse.NotFoundError, match="run 99 not found"):
        browse.run_detail(store.db, 99)
    with pytest.raises(browse.NotFoundError, match="does not exist"):
        browse.list_runs(tmp_path / "none.db", browse.RunFilter())


@pytest.mark.parametrize("table", ["orders", "fills"])
def test_orders_and_fills_are_paged_in_time_order(store: Store, table: str) -> None:
    read = browse.orders_page if table == "orders" else browse.fills_page
    n_fills = store.summaries[1]["n_fills"]

    pages = [read(store.db, 1, page=p, limit=50) for p in range(1, 5)]

    assert all(p["total"] == n_fills for p in pages)
    assert pages[0]["pages"] == -(-n_fills // 50)
    rows = [row for p in pages for row in p["rows"]]
    assert len(rows) == n_fills
    assert pages[0]["rows"] != pages[1]["rows"]
    times = [row["ts_ns"] for row in rows]
    assert times == sorted(times)
    key = "client_order_id" if table == "orders" else "fill_id"
    assert len({row[key] for row in rows}) == n_fills


def test_equity_exposure_and_round_trips_come_from_the_run(store: Store) -> None:
    summary = store.summaries[1]

    ts, equity, cash = browse.equity_curve(store.db, 1)
    ratio = browse.exposure(equity, cash)
    pnls = browse.trade_pnls(store.db, 1)

    assert ts.size == summary["n_bars"] and equity[-1] == summary["final_equity"]
    assert np.all((ratio >= -1e-9) & (ratio <= 1 + 1e-6))  # long only, all in at most
    assert pnls.size == summary["n_trades"]
    win_rate = float(np.mean(pnls > 0))
    assert win_rate == pytest.approx(summary["metrics"]["win_rate"])


def test_fills_per_symbol_are_what_the_chart_takes(store: Store) -> None:
    fills = browse.symbol_fills(store.db, 1)

    assert list(fills) == ["SYN"]
    ts, side, price, quantity = fills["SYN"][0]
    assert side in ("BUY", "SELL") and price > 0 and quantity > 0 and isinstance(ts, int)


def test_prices_are_reloaded_only_when_they_hash_to_the_run(store: Store, copy: Path) -> None:
    prices = browse.RunPrices()

    data = prices.get(store.db, 1)
    sql(copy, "UPDATE runs SET data_name = 'synthetic:n_bars=3000,seed=9' WHERE run_id = 1")

    assert data.sha256() == browse.run_detail(store.db, 1)["run"]["data_hash"]
    assert prices.get(store.db, 1) is data  # cached
    with pytest.raises(browse.NotFoundError, match="is not what run 1 traded"):
        prices.get(copy, 1)


def test_audit_is_verified_and_a_tampered_fill_is_named(store: Store, copy: Path) -> None:
    sql(copy, "UPDATE fills SET price = price + 1 WHERE run_id = 1 AND fill_id = "
              "(SELECT MIN(fill_id) FROM fills WHERE run_id = 1)")  # fmt: skip

    ok = browse.audit_status(store.db, 1)
    broken = browse.audit_status(copy, 1)
    other_run = browse.audit_status(copy, 2)

    assert ok["ok"] and ok["status"] == "ok" and ok["anchored"] is True
    assert ok["problems"] == [] and ok["counts"]["runs"] == 3
    assert not broken["ok"] and broken["status"] == "failed"
    assert broken["run_problems"] and all(p.startswith("run 1 ") for p in broken["run_problems"])
    assert not other_run["ok"] and other_run["run_problems"] == []


def test_a_locked_store_is_busy_not_broken(copy: Path) -> None:
    with closing(sqlite3.connect(copy, isolation_level=None)) as holder:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")  # held until closed: readers get SQLITE_BUSY

        with pytest.raises(browse.StoreBusyError, match="is busy"):
            browse.list_runs(copy, browse.RunFilter())


# -- models --------------------------------------------------------------------------------------

TRAIN = ("train", "--data", "synthetic:n_bars=1500,seed=3,freq=1D", "--folds", "3",
         "--param", "gbm_n_estimators=20", "--param", "forest_n_estimators=20")  # fmt: skip


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry") / "models"
    run_cli(*TRAIN, "--registry", str(root))
    return root


def test_models_are_listed_with_their_scores(registry: Path) -> None:
    [row] = browse.list_models(registry)

    assert row["version"] == "v0001" and row["kind"] == "train" and row["parent"] is None
    assert 0 < row["auc"] < 1 and row["n_features"] == 28 and row["symbol"] == "SYN"


def test_a_model_shows_its_folds_lineage_and_what_is_missing(registry: Path) -> None:
    detail = browse.model_detail(registry, "v0001")

    assert [f["name"] for f in detail["folds"]] == ["fold 1", "fold 2", "fold 3"]
    assert detail["overall"]["name"] == "overall"
    assert detail["lineage"]["data_hash"] == detail["info"]["data_hash"]
    assert "low" not in detail["info"]["extra"]  # per-feature ranges: not for display
    assert detail["oos"]["stored"] and detail["oos"]["n_folds"] == 3
    assert detail["oos"]["n_rows"] == sum(f["n_test"] for f in detail["folds"])


def test_the_out_of_sample_predictions_are_the_walk_forwards(registry: Path) -> None:
    oos = browse.model_oos(registry, "v0001")
    detail = browse.model_detail(registry, "v0001")

    assert oos is not None and oos.folds == ["fold 1", "fold 2", "fold 3"]
    for i, fold in enumerate(detail["folds"]):
        assert int(oos.positive[i].sum() + oos.negative[i].sum()) == fold["n_test"]
        assert oos.positive[i].sum() / fold["n_test"] == pytest.approx(fold["positive_rate"])
        roc = oos.roc(i)
        assert roc is not None
        # 1,350 rows in about 1,050 bins: a few rows share a bin (a tie), hence not 1e-12
        assert np.trapezoid(roc[1], roc[0]) == pytest.approx(fold["auc"], abs=1e-3)


def resave_without_oos(registry: Path, copy: Path) -> str:
    """The trained version saved again as the registry saved every version before it kept
    the out-of-sample predictions (and as ``models compress`` still does): no files=."""
    from ultrathink.models.registry import ModelRegistry

    shutil.copytree(registry, copy)
    reg = ModelRegistry(copy)
    loaded = reg.load("v0001")
    info = loaded.info
    return reg.save(loaded.model, feature_names=info.feature_names, params=info.params,
                    data_hash=info.data_hash, metrics=info.metrics,
                    train_period=info.train_period, extra=info.extra)  # fmt: skip


def test_a_version_saved_without_its_predictions_says_why(registry: Path, tmp_path: Path) -> None:
    old = resave_without_oos(registry, tmp_path / "models")

    detail = browse.model_detail(tmp_path / "models", old)

    assert browse.model_oos(tmp_path / "models", old) is None
    assert detail["oos"]["stored"] is False and "oos.npz" in detail["oos"]["why"]
    assert len(detail["folds"]) == 3, "its scores are still shown"


def test_importances_are_each_members_own(registry: Path) -> None:
    found = browse.model_importances(registry, "v0001")

    assert len(found["features"]) == 28
    assert set(found["members"]) == {"gbm", "forest", "linear"}
    for member in found["members"].values():
        assert len(member["values"]) == 28
        assert sum(member["values"]) == pytest.approx(1.0)
        assert member["weight"] == pytest.approx(1 / 3)


def test_an_unknown_version_is_not_found(registry: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="v0009"):
        browse.model_detail(registry, "v0009")
    with pytest.raises(ModelNotFoundError, match="v0009"):
        browse.model_report(registry, "v0009")


def test_the_training_report_is_found_beside_the_registry(registry: Path, tmp_path: Path) -> None:
    copied = tmp_path / "models"
    shutil.copytree(registry, copied)

    found = browse.model_report(registry, "v0001")
    (copied / "reports" / "v0001.html").unlink()

    assert found == registry / "reports" / "v0001.html"
    with pytest.raises(browse.NotFoundError, match="no training report for v0001"):
        browse.model_report(copied, "v0001")


# -- performance ---------------------------------------------------------------------------------


def bench_line(name: str, values: list[float], commit: str, *, lower: bool = True) -> BenchResult:
    return BenchResult(name, "engine", "s" if lower else "bars/s", lower, values, 1, False)


def env(commit: str) -> dict[str, Any]:
    return {"commit": commit, "dirty": False, "date_utc": "2026-12-01T00:00:00Z",
            "machine": {"cpu_model": "test cpu", "n_cores": 2}}  # fmt: skip


def write_history(path: Path) -> None:
    steady = [1.00, 1.01, 0.99, 1.00, 1.02, 0.98]
    slower = [1.50, 1.52, 1.49, 1.51, 1.50, 1.53]
    for commit, time_values, rate_values in (
        ("a" * 40, steady, [100.0, 101, 99, 100, 102, 98]),
        ("b" * 40, steady, [100.0, 99, 101, 100, 98, 102]),
        ("c" * 40, slower, [150.0, 151, 149, 150, 152, 148]),  # slower; faster throughput
    ):
        results = [bench_line("engine.loop", time_values, commit),
                   bench_line("engine.rate", rate_values, commit, lower=False)]  # fmt: skip
        append_results(results, path, env(commit))
    with path.open("a") as fh:
        fh.write('{"name": "serving.http", "commit": "d00d", "hit_p99_over_floor_p99": 1.4}\n')
        fh.write("not json\n")


def test_bench_history_flags_the_commit_that_regressed(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    write_history(path)

    history = browse.bench_history(path)

    assert [r["commit"][0] for r in history["records"]] == list("aabbcc")
    [regression] = history["regressions"]
    assert regression["name"] == "engine.loop" and regression["status"] == "regression"
    assert (regression["base_commit"], regression["commit"]) == ("b" * 10, "c" * 10)
    assert regression["slowdown"] == pytest.approx(0.5, abs=0.02)
    assert history["other"] == {"serving.http": "d00d"} and history["bad_lines"] == 1


def test_every_regression_in_the_history_is_found_with_its_record(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    steady, slower = [1.00, 1.01, 0.99, 1.00, 1.02, 0.98], [1.50, 1.52, 1.49, 1.51, 1.50, 1.53]
    for commit, values in zip("abcd", (steady, slower, steady, slower), strict=True):
        append_results([bench_line("engine.loop", values, commit * 40)], path, env(commit * 40))

    history = browse.bench_history(path)
    again = browse.bench_history(path)

    found = [(r["index"], r["base_commit"][0], r["commit"][0]) for r in history["regressions"]]
    assert found == [(1, "a", "b"), (3, "c", "d")], "c recovered: an improvement, not flagged"
    assert again is history, "kept while the file is unchanged"
    with path.open("a") as fh:
        fh.write("\n")
    assert browse.bench_history(path) is not history, "read again once it changed"


def test_bench_history_needs_the_file(tmp_path: Path) -> None:
    with pytest.raises(browse.NotFoundError, match="no benchmark results"):
        browse.bench_history(tmp_path / "results.jsonl")


def test_the_latest_profile_is_read_with_its_stages(tmp_path: Path) -> None:
    out = tmp_path / "profile"
    run_cli("profile", "--no-calls", "--sample-every", "64", "--out", str(out), "--",
            "backtest", "--data", "synthetic:n_bars=20000,seed=1", "--no-store")  # fmt: skip

    profile = browse.latest_profile(out / "profile.json")
    (tmp_path / "bad.json").write_text("[1, 2]")

    [run] = profile["runs"]
    assert run["strategy"] == "sma_cross" and run["bottleneck"]
    assert {"stage", "share"} <= set(run["bottleneck"][0])
    with pytest.raises(browse.NotFoundError, match="no profile at"):
        browse.latest_profile(tmp_path / "none.json")
    with pytest.raises(browse.NotFoundError, match="not a profile"):
        browse.latest_profile(tmp_path / "bad.json")
