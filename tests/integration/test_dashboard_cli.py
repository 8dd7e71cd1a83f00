"""``ultrathink dashboard`` over real HTTP: a real uvicorn on 127.0.0.1 (port 0), urllib as the
client, stores made by real runs. Login, the pages, every chart route, paging, the audit
verdict on a pristine and a tampered store, comparison, models, performance, bad input, a
1,000,000-point equity curve, and the command itself (refusals, login link, SIGTERM)."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import os
import queue
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.io
import pytest

from ultrathink.cli import main
from ultrathink.models.registry import ModelRegistry
from ultrathink.perf.results import append_results
from ultrathink.perf.suite import BenchResult
from ultrathink.persistence import Store, StoreWriter, WriteBatch
from ultrathink.web.dashboard_app import DashboardConfig
from ultrathink.web.dashboard_server import DashboardServer, session_file_for

SMA_DATA = "synthetic:n_bars=3000,seed=4"
HOLD_DATA = "synthetic:n_bars=2000,seed=5"
CHARTS = ("equity", "price", "monthly", "trades", "exposure")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 303 of /login is what the test looks at


_RAW = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
    """One real HTTP request; redirects are not followed."""
    data = b"" if method == "POST" else None
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with _RAW.open(request, timeout=120) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, exc.headers, exc.read())


def run_cli(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    assert code == 0, err.getvalue()
    return out.getvalue()


# -- what the dashboard shows ---------------------------------------------------------------------


def write_bench(path: Path) -> None:
    """Four commits of one timed benchmark: the 2nd and the 4th are 50 % slower than the one
    before (two regressions, one in the middle of the history), the 3rd recovers."""
    steady, slower = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98], [1.5, 1.52, 1.49, 1.51, 1.5, 1.53]
    for commit, values in (("1" * 40, steady), ("2" * 40, slower), ("3" * 40, steady),
                           ("4" * 40, slower)):  # fmt: skip
        result = BenchResult("engine.loop", "engine", "s", True, values, 1, False)
        env = {"commit": commit, "dirty": False, "date_utc": "2026-12-01T00:00:00Z",
               "machine": {"cpu_model": "test cpu"}}  # fmt: skip
        append_results([result], path, env)


def resave_without_oos(registry: Path) -> str:
    """v0001 saved again as v0002 the way every version was saved before the registry kept
    the out-of-sample predictions (and as ``models compress`` still saves): no oos.npz."""
    reg = ModelRegistry(registry)
    loaded = reg.load("v0001")
    info = loaded.info
    return reg.save(loaded.model, feature_names=info.feature_names, params=info.params,
                    data_hash=info.data_hash, metrics=info.metrics,
                    train_period=info.train_period, extra=info.extra)  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> DashboardConfig:
    """A store (1: sma_cross, 2: buy_and_hold), a trained model, bench results, a profile."""
    root = tmp_path_factory.mktemp("site")
    db = root / "u.db"
    run_cli("backtest", "--db", str(db), "--data", SMA_DATA, "--json")
    run_cli("backtest", "--db", str(db), "--data", HOLD_DATA, "--strategy", "buy_and_hold")
    run_cli("train", "--data", "synthetic:n_bars=1500,seed=3,freq=1D", "--folds", "3",
            "--param", "gbm_n_estimators=20", "--param", "forest_n_estimators=20",
            "--registry", str(root / "models"))  # fmt: skip
    run_cli("profile", "--no-calls", "--sample-every", "64", "--out", str(root / "profile"),
            "--", "backtest", "--data", SMA_DATA, "--no-store")  # fmt: skip
    resave_without_oos(root / "models")
    write_bench(root / "results.jsonl")
    return DashboardConfig(db, root / "models", root / "results.jsonl",
                           root / "profile" / "profile.json")  # fmt: skip


@contextlib.contextmanager
def serving(config: DashboardConfig) -> Iterator[DashboardServer]:
    server = DashboardServer(config, port=0, session_file=session_file_for(config.db))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(site: DashboardConfig) -> Iterator[DashboardServer]:
    with serving(site) as running:
        yield running


def api(server: DashboardServer, path: str) -> Answer:
    """A request with the bearer token, as a script sends it."""
    return fetch(server.url + path, headers={"Authorization": f"Bearer {server.token}"})


def figure(answer: Answer) -> Any:
    """The answer as a plotly figure (plotly validates it)."""
    assert answer.status == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    return plotly.io.from_json(answer.text)


def values(data: Any) -> np.ndarray:
    """A trace's data array: a list, or plotly's typed array ``{"dtype", "bdata"}``."""
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
    return np.asarray(data, dtype=np.float64)


def login(server: DashboardServer) -> str:
    """Log in with a fresh one-time link; the ``Cookie`` header to send."""
    answer = fetch(server.login_url())
    assert answer.status == 303, answer.text
    return answer.headers["set-cookie"].split(";", 1)[0]


# -- login ---------------------------------------------------------------------------------------


def test_the_login_link_works_once_and_its_cookie_opens_every_page(server) -> None:
    link = server.login_url()

    first = fetch(link)
    again = fetch(link)
    cookie = first.headers["set-cookie"]
    jar = {"Cookie": cookie.split(";", 1)[0]}
    page = fetch(server.url + "/runs", headers=jar)
    data = fetch(server.url + "/api/runs", headers=jar)

    assert first.status == 303 and first.headers["location"] == "/"
    assert cookie.startswith(f"ultrathink_dashboard_{server.port}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert first.headers["referrer-policy"] == "no-referrer"
    assert again.status == 401 and "wrong, used or expired" in again.text
    assert page.status == 200 and "Runs in u.db" in page.text
    assert data.status == 200 and data.json()["total"] == 2


@pytest.mark.parametrize("path", ["/", "/runs", "/runs/1", "/models", "/perf", "/compare",
                                  "/assets/plotly.min.js", "/nowhere"])  # fmt: skip
def test_a_page_without_login_says_how_to_log_in(server, path: str) -> None:
    answer = fetch(server.url + path)

    assert answer.status == 401
    assert answer.headers["content-type"].startswith("text/html")
    assert "one-time login link" in answer.text and "ultrathink dashboard link" in answer.text


@pytest.mark.parametrize("credential", ["none", "wrong bearer", "basic", "forged cookie"])
def test_the_api_without_a_valid_credential_is_401_json(server, credential: str) -> None:
    headers = {
        "none": {},
        "wrong bearer": {"Authorization": "Bearer wrong-token-0123456789"},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "forged cookie": {"Cookie": f"ultrathink_dashboard_{server.port}=forged-session-id"},
    }[credential]

    answer = fetch(server.url + "/api/runs", headers=headers)

    assert answer.status == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "one-time login link" in answer.json()["error"]


@pytest.mark.parametrize(
    ("next_page", "location"),
    [("/runs/1?limit=5", "/runs/1?limit=5"), ("//evil.example/x", "/"),
     ("https://evil.example/", "/"), ("/\\evil.example", "/")],
)  # fmt: skip
def test_a_login_goes_on_to_a_local_page_only(server, next_page: str, location: str) -> None:
    query = urllib.parse.urlencode({"next": next_page})

    answer = fetch(f"{server.login_url()}&{query}")

    assert answer.status == 303 and answer.headers["location"] == location


def test_a_wrong_login_token_is_refused(server) -> None:
    answer = fetch(server.url + "/login?t=not-a-token")
    twice = fetch(server.url + "/login?t=a&t=b")

    assert answer.status == twice.status == 401
    assert "set-cookie" not in answer.headers


def test_logging_out_ends_the_session(server) -> None:
    jar = {"Cookie": login(server)}

    out = fetch(server.url + "/logout", headers=jar)
    after = fetch(server.url + "/runs", headers=jar)

    assert out.status == 200 and "logged out" in out.text
    assert after.status == 401 and "session has ended" in after.text


def test_a_new_login_link_needs_the_bearer_token(server) -> None:
    refused = fetch(server.url + "/api/login-link", method="POST")
    minted = fetch(server.url + "/api/login-link", method="POST",
                   headers={"Authorization": f"Bearer {server.token}"})  # fmt: skip

    assert refused.status == 401
    assert minted.status == 200 and fetch(minted.json()["url"]).status == 303


def test_a_foreign_host_header_and_a_cross_origin_post_are_refused(server) -> None:
    jar = {"Cookie": login(server)}

    rebound = fetch(server.url + "/runs", headers={**jar, "Host": "evil.example:80"})
    cross = fetch(server.url + "/runs", method="POST",
                  headers={**jar, "Origin": "http://evil.example"})  # fmt: skip

    assert rebound.status == 400 and "not a loopback name" in rebound.text
    assert cross.status == 403


def test_the_session_file_holds_the_url_and_token_for_its_owner_only(server, site) -> None:
    path = session_file_for(site.db)

    content = json.loads(path.read_text())

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert content["url"] == server.url and content["token"] == server.token
    assert content["pid"] == os.getpid() and content["db"] == str(site.db.resolve())


# -- runs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [2, 1]),
        ("?strategy=sma_cross", [1]),
        ("?mode=backtest", [2, 1]),
        ("?mode=paper", []),
        ("?status=completed", [2, 1]),
        (f"?data={HOLD_DATA.replace('=', '%3D').replace(',', '%2C')}", [2]),
        ("?since=2000-01-01&until=2999-12-31", [2, 1]),
        ("?until=2000-01-01", []),
        ("?limit=1&page=2", [1]),
    ],
)
def test_the_run_list_filters(server, query: str, expected: list[int]) -> None:
    answer = api(server, "/api/runs" + query)

    assert answer.status == 200
    assert [r["run_id"] for r in answer.json()["rows"]] == expected


def test_the_runs_page_lists_and_links_the_runs(server) -> None:
    page = api(server, "/runs?strategy=buy_and_hold")

    assert page.status == 200
    assert '<a href="/runs/2">2</a>' in page.text and '<a href="/runs/1">' not in page.text
    assert "1 run(s) match" in page.text


def test_the_run_page_shows_every_section(server) -> None:
    page = api(server, "/runs/1")

    assert page.status == 200
    assert page.headers["cache-control"] == "no-store"
    for text in ("Audit trail", "Metrics", "sharpe", "Monthly returns", "Orders", "Fills",
                 "Positions", 'data-audit="/api/runs/1/audit"',
                 "/assets/plotly.min.js?v=" + plotly.__version__):  # fmt: skip
        assert text in page.text
    for name in CHARTS:
        assert f'data-fig="/api/runs/1/charts/{name}"' in page.text


@pytest.mark.parametrize("name", CHARTS)
def test_every_run_chart_is_plotly_json(server, name: str) -> None:
    fig = figure(api(server, f"/api/runs/1/charts/{name}"))

    assert fig.data, name
    for trace in fig.data:
        assert len(getattr(trace, "x", None) or ()) <= 2002


def test_the_price_chart_draws_the_runs_fills_on_its_reloaded_prices(server) -> None:
    fig = figure(api(server, "/api/runs/1/charts/price?symbol=SYN"))
    names = [t.name for t in fig.data]

    assert names[0] == "SYN close" and "buys" in names and "sells" in names
    assert api(server, "/api/runs/1/charts/price?symbol=XYZ").status == 404


def test_orders_and_fills_are_paged_on_the_server(server) -> None:
    n_fills = api(server, "/api/runs/1").json()["n_fills"]

    for table in ("orders", "fills"):
        one = api(server, f"/api/runs/1/{table}?page=1&limit=20").json()
        two = api(server, f"/api/runs/1/{table}?page=2&limit=20").json()
        assert one["total"] == two["total"] == n_fills
        assert one["pages"] == -(-n_fills // 20) and len(one["rows"]) == 20
        assert one["rows"] != two["rows"]
    page = api(server, "/runs/1?fills_page=2&limit=20")
    assert f"page 2 of {-(-n_fills // 20)} ({n_fills} rows)" in page.text


def test_the_audit_is_verified(server) -> None:
    audit = api(server, "/api/runs/1/audit").json()

    assert audit["ok"] and audit["status"] == "ok" and audit["anchored"]
    assert "chain and tables agree" in audit["message"] and audit["problems"] == []


def test_a_tampered_store_fails_its_audit(site: DashboardConfig, tmp_path: Path) -> None:
    for file in site.db.parent.glob(f"{site.db.name}*"):
        if file.is_file() and not file.name.endswith(".json"):
            shutil.copy(file, tmp_path / file.name)
    tampered = tmp_path / site.db.name
    with closing(sqlite3.connect(tampered)) as conn:
        conn.execute("UPDATE fills SET quantity = quantity * 2 WHERE run_id = 1 AND fill_id = "
                     "(SELECT MAX(fill_id) FROM fills WHERE run_id = 1)")  # fmt: skip
        conn.commit()
    config = DashboardConfig(tampered, site.registry, site.bench_results, site.profile)

    with serving(config) as other:
        audit = api(other, "/api/runs/1/audit").json()

    assert not audit["ok"] and audit["status"] == "failed"
    assert audit["run_problems"] and all(p.startswith("run 1 ") for p in audit["run_problems"])
    assert "disagree" in audit["message"]


def test_a_locked_store_answers_503_with_a_message(site: DashboardConfig, tmp_path: Path) -> None:
    locked = tmp_path / site.db.name
    shutil.copy(site.db, locked)
    config = DashboardConfig(locked, site.registry, site.bench_results, site.profile)

    with serving(config) as other, closing(sqlite3.connect(locked, isolation_level=None)) as holder:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")  # readers wait out their busy timeout, then give up
        data = api(other, "/api/runs")
        page = api(other, "/runs/1")

    assert data.status == 503 and "is busy" in data.json()["error"]
    assert page.status == 503 and "Store busy" in page.text and "retry in a moment" in page.text


def test_two_runs_are_compared(server) -> None:
    data = api(server, "/api/compare?a=1&b=2").json()
    fig = figure(api(server, "/api/compare/chart?a=1&b=2"))
    page = api(server, "/compare?a=1&b=2")

    assert data["a"]["run"]["strategy"] == "sma_cross"
    assert data["b"]["run"]["strategy"] == "buy_and_hold"
    assert [t.name for t in fig.data] == ["run 1", "run 2"]
    assert page.status == 200 and "Run 1 vs run 2" in page.text and "sharpe" in page.text
    assert api(server, "/compare").status == 200  # the form alone


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/runs/999", 404, "run 999 not found"),
        ("/runs/999", 404, "run 999 not found"),
        ("/api/runs/999/charts/equity", 404, "run 999 not found"),
        ("/api/runs/1/charts/candles", 404, "no chart 'candles'"),
        ("/api/runs/abc", 422, "run id must be an integer"),
        ("/api/runs?page=0", 422, "page must be in 1.."),
        ("/api/runs?limit=100000", 422, "limit must be in 1..500"),
        ("/api/runs?mode=live", 422, "mode must be one of"),
        ("/api/runs?since=2026-02-30", 422, "since must be a real date"),
        ("/api/runs?colour=red", 400, "unknown query parameter 'colour'"),
        ("/api/runs?page=1&page=2", 400, "given 2 times"),
        ("/api/compare?a=1", 422, "compare needs two run ids"),
        ("/api/models/v0099", 404, "model version 'v0099' not found"),
        ("/models/v0099", 404, "model version 'v0099' not found"),
        ("/api/models/v0001/charts/lift", 404, "no chart 'lift'"),
        ("/api/models/v0002/charts/roc", 404, "v0002: not stored for this version"),
        ("/api/models/v0001/charts/importances?member=tree", 404, "no member 'tree'"),
        ("/api/nowhere", 404, "Not Found"),
    ],
)
def test_bad_input_gets_a_clear_4xx(server, path: str, status: int, message: str) -> None:
    answer = api(server, path)

    assert answer.status == status, answer.text
    if path.startswith("/api/"):
        assert message in answer.json()["error"]
    else:
        assert answer.headers["content-type"].startswith("text/html")
        assert html.escape(message) in answer.text


# -- models and performance ----------------------------------------------------------------------


def test_the_model_pages_show_the_registry(server) -> None:
    listed = api(server, "/models")
    page = api(server, "/models/v0001")
    detail = api(server, "/api/models/v0001").json()

    assert listed.status == 200 and '<a href="/models/v0001">v0001</a>' in listed.text
    assert page.status == 200
    for text in ("Walk-forward", "fold 3", "Feature importances", "ROC curve", "Calibration",
                 "Prediction distribution", "Lineage"):  # fmt: skip
        assert text in page.text
    for chart in ("roc", "calibration", "predictions"):
        assert f'data-fig="/api/models/v0001/charts/{chart}"' in page.text
    assert "not stored" not in page.text
    assert len(detail["folds"]) == 3 and detail["lineage"]["data_hash"]
    assert detail["oos"]["stored"] and detail["oos"]["n_folds"] == 3
    folds = figure(api(server, "/api/models/v0001/charts/folds"))
    assert {t.name for t in folds.data} >= {"AUC", "log loss"}
    for member in ("gbm", "forest", "linear"):
        bars = figure(api(server, f"/api/models/v0001/charts/importances?member={member}"))
        assert len(bars.data[0].y) == 28
    report = api(server, "/models/v0001/report")  # the file `train` wrote, sandboxed
    assert '<a href="/models/v0001/report">' in page.text
    assert report.status == 200 and "v0001" in report.text
    assert report.headers["content-security-policy"].startswith("sandbox allow-scripts;")


def test_the_model_page_draws_roc_calibration_and_predictions(server) -> None:
    detail = api(server, "/api/models/v0001").json()
    roc = figure(api(server, "/api/models/v0001/charts/roc"))
    calibration = figure(api(server, "/api/models/v0001/charts/calibration"))
    predictions = figure(api(server, "/api/models/v0001/charts/predictions"))

    n_rows = sum(f["n_test"] for f in detail["folds"])
    names = [t.name for t in roc.data]
    assert names[:3] == [f"fold {i} (AUC {detail['folds'][i - 1]['auc']:.3f})" for i in (1, 2, 3)]
    assert names[3] == f"all folds (AUC {detail['overall']['auc']:.3f})" and names[4] == "chance"
    for trace in roc.data[:4]:
        x, y = values(trace.x), values(trace.y)
        assert (x[0], y[0], x[-1], y[-1]) == (0.0, 0.0, 1.0, 1.0) and x.size > 100
        assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)
    [curve, diagonal] = calibration.data
    assert curve.name == "all folds" and diagonal.name == "perfectly calibrated"
    assert np.all((values(curve.x) >= 0) & (values(curve.x) <= 1) & (values(curve.y) <= 1))
    class1, class0 = (values(t.y) for t in predictions.data)
    assert class1.sum() + class0.sum() == n_rows and class1.size == 50
    assert class1.sum() == round(detail["overall"]["positive_rate"] * n_rows)


def test_a_model_saved_without_its_predictions_says_so(server) -> None:
    page = api(server, "/models/v0002")
    detail = api(server, "/api/models/v0002").json()

    assert page.status == 200 and detail["oos"]["stored"] is False
    for text in ("ROC curve", "Calibration", "Prediction distribution", "Feature importances"):
        assert text in page.text
    assert page.text.count("not stored for this version") == 3
    assert "/api/models/v0002/charts/roc" not in page.text
    assert figure(api(server, "/api/models/v0002/charts/folds")).data  # its scores still are


def test_the_perf_page_marks_the_regression_and_shows_the_profile(server) -> None:
    page = api(server, "/perf")
    data = api(server, "/api/perf").json()
    history = figure(api(server, "/api/perf/charts/history"))
    stages = figure(api(server, "/api/perf/charts/stages?run=1"))

    assert page.status == 200 and "engine.loop" in page.text and "2222222222" in page.text
    found = [(r["base_commit"], r["commit"]) for r in data["bench"]["regressions"]]
    assert found == [("1" * 10, "2" * 10), ("3" * 10, "4" * 10)]
    series = next(t for t in history.data if t.name == "engine.loop")
    marked = next(t for t in history.data if t.name == "regression (bench --compare)")
    assert list(marked.x) == ["2" * 10, "4" * 10], "each where it happened, not only the last"
    assert list(values(marked.y)) == [values(series.y)[1], values(series.y)[3]]
    assert stages.data and data["profile"]["runs"][0]["strategy"] == "sma_cross"
    assert api(server, "/api/perf/charts/stages?run=9").status == 422


# -- a long run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose one run has a 1,000,000-point equity curve (written by the store writer)."""
    db = tmp_path_factory.mktemp("million") / "m.db"
    n, chunk = 1_000_000, 65_536
    ts = 1_577_836_800_000_000_000 + np.arange(n, dtype=np.int64) * 60_000_000_000
    equity = 1e5 * np.exp(np.cumsum(np.random.default_rng(7).normal(0.0, 1e-4, n)))
    with Store(db) as store:
        run_id = store.create_run("backtest", "curve", {}, {"starting_cash": 1e5},
                                  "synthetic:n_bars=1000000", "0" * 64, "test", 1)  # fmt: skip
    with StoreWriter(db) as writer:
        for i in range(0, n, chunk):
            part = slice(i, i + chunk)
            writer.put(WriteBatch(run_id, equity=(ts[part], equity[part], equity[part] * 0.4)))
    with Store(db) as store:
        store.finish_run(run_id, "completed", {"final_equity": float(equity[-1])}, 2)
    return db


def test_a_million_point_equity_curve_is_downsampled_on_the_server(million, site) -> None:
    config = DashboardConfig(million, site.registry, site.bench_results, site.profile)

    with serving(config) as other:
        equity = api(other, "/api/runs/1/charts/equity")
        exposure = api(other, "/api/runs/1/charts/exposure")
        price = api(other, "/api/runs/1/charts/price")
        page = api(other, "/runs/1")

    assert page.status == 200 and "1,000,000" in page.text
    for answer in (equity, exposure):
        fig = figure(answer)
        assert max(len(t.x) for t in fig.data) <= 2002
        assert len(answer.body) < 600_000
    # the run's data name does not hash to its data: fills only, and the reason
    assert "is not what run 1 traded" in figure(price).layout.title.text


# -- the command ---------------------------------------------------------------------------------


def test_the_command_refuses_a_missing_store(cli, tmp_path: Path) -> None:
    result = cli("dashboard", "--db", str(tmp_path / "none.db"), "--port", "0")

    assert result.code == 2
    assert result.err.startswith("error: store ") and "does not exist" in result.err


def test_the_command_refuses_a_non_loopback_host(cli, site) -> None:
    result = cli("dashboard", "--db", str(site.db), "--host", "0.0.0.0", "--port", "0")

    assert result.code == 2 and "--host must be a loopback address" in result.err


def test_the_command_refuses_a_port_in_use(cli, site) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = cli("dashboard", "--db", str(site.db), "--port", str(port))

    assert result.code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.err


def test_link_without_a_running_dashboard_says_so(cli, tmp_path: Path) -> None:
    result = cli("dashboard", "link", "--db", str(tmp_path / "u.db"))

    assert result.code == 2 and "no dashboard is serving this store" in result.err


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)
    into.put("")


def test_the_command_serves_prints_a_login_link_and_stops_on_sigterm(
    site: DashboardConfig, tmp_path: Path
) -> None:
    db = tmp_path / "u.db"
    shutil.copy(site.db, db)
    exe = Path(sys.executable).parent / "ultrathink"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
    proc = subprocess.Popen([str(exe), "dashboard", "--db", str(db), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        printed = [lines.get(timeout=120) for _ in range(3)]  # the start-up lines: readiness
        link = printed[1].split("link): ", 1)[1].strip()
        logged_in = fetch(link)
        again = subprocess.run([str(exe), "dashboard", "link", "--db", str(db)], check=False,
                               env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        second = fetch(again.stdout.split("link): ", 1)[1].strip())
        token = json.loads(session_file_for(db).read_text())["token"]
        live = fetch(printed[0].rsplit(" ", 1)[1].strip() + "/api/live",
                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = []
    while (line := lines.get(timeout=10)) != "":
        rest.append(line)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader thread met its end
    err = proc.stderr.read()
    proc.stderr.close()

    assert printed[0].startswith(f"dashboard of {db} (2 runs): http://127.0.0.1:")
    assert "session file (URL and bearer token for scripts)" in printed[2]
    assert logged_in.status == 303 and "HttpOnly" in logged_in.headers["set-cookie"]
    assert again.returncode == 0 and second.status == 303
    assert live.status == 200 and live.json() == {"sessions": []}  # the live pages are served
    assert code == 0, err
    assert rest == ["stopped\n"]
    assert not session_file_for(db).exists()
