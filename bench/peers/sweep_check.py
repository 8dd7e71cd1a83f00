"""Check the sweep peers against ULTRATHINK, point by point (run with the project's venv).

Given the JSON outputs of ``sweep_backtesting.py`` and ``sweep_vectorbt.py``, runs
ULTRATHINK's standalone backtest for every grid point in this process and compares the
objective (total return) and the closed-trade count per point, and the best point::

    .venv/bin/python bench/peers/sweep_check.py \\
        bench/peers/work/sweep-backtesting.json bench/peers/work/sweep-vectorbt.json

Each point is what ``ultrathink backtest --strategy sma_cross --param fast=F --param slow=S
--data sp500 --no-store`` runs: ``services.engine_config(realistic=False)`` (the backtest
defaults: zero costs, all-in sizing, 100,000 cash; ``ULTRATHINK__*`` variables apply, as for
the CLI), ``services.make_strategy("sma_cross", {"fast": "F", "slow": "S"})`` (the CLI's
string parameters) and ``services.run_strategy`` over ``services.load("sp500")``. The figure
compared is ``RunResult.metrics.total_return`` (the ``total_return`` of ``--json``; the table
prints it as a percentage). To show that these in-process figures are the CLI's, the best
point is also run through ``services.execute_run`` (the CLI's own call) and through the
``ultrathink`` command itself in a subprocess (``--json --no-store``): all three must agree
to the last bit.

ULTRATHINK's rate is single-process: per point, strategy construction and
``run_strategy`` (kernel construction, every bar, orders and fills, final metrics; no store)
are timed; loading the data once is not. Writes ``results/sweep-<date>.json`` and prints
the summary; exits 1 when a peer disagrees beyond ``--tol`` or on another best point.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sweep_common import CASH, METRIC, best_of, data_digest, grid, key  # noqa: E402

import ultrathink  # noqa: E402
from ultrathink import services  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("peers", nargs="+", type=Path, help="JSON outputs of the sweep peers")
    p.add_argument("--tol", type=float, default=1e-9, help="max abs difference of total return")
    p.add_argument("--out", type=Path, help="default: results/sweep-<date>.json")
    p.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess check")
    p.add_argument(
        "--sweep-backends", default="local:1,local:2,ray:1,ray:2",
        help="`ultrathink sweep` runs to time, comma-separated (local:N is --workers N; ray:N "
        "is --ray local --workers N); empty for none",
    )  # fmt: skip
    args = p.parse_args()
    peers = [json.loads(path.read_text()) for path in args.peers]
    load_before = os.getloadavg()

    data = services.load("sp500")
    digest = data_digest(data.ts_ns, data.open, data.close)
    config = services.engine_config(realistic=False)
    if config.starting_cash != CASH:
        raise SystemExit(f"starting cash is {config.starting_cash}, the peers used {CASH}")

    per_point: dict[str, float] = {}
    n_trades: dict[str, int] = {}
    odd: dict[str, dict[str, int]] = {}
    seconds = 0.0
    for f, s in grid():
        t0 = time.perf_counter()
        strategy = services.make_strategy("sma_cross", {"fast": str(f), "slow": str(s)})
        result = services.run_strategy(strategy, data, config)
        seconds += time.perf_counter() - t0
        k = key(f, s)
        per_point[k] = result.metrics.total_return
        n_trades[k] = result.metrics.n_trades
        if result.n_denied or result.capped_buys:
            odd[k] = {"n_denied": result.n_denied, "capped_buys": result.capped_buys}
    best_k, best_v = best_of(per_point)
    bf, bs = (int(x) for x in best_k.split("/"))

    cli = _cli_identity(bf, bs, best_v, n_trades[best_k], skip_subprocess=args.no_cli)
    ut = {
        "engine": "ultrathink",
        "version": ultrathink.__version__,
        "points": len(per_point),
        "seconds": seconds,
        "backtests_per_s": len(per_point) / seconds,
        "timed": "per point: make_strategy + services.run_strategy (no store), summed; one "
        "process; data loaded once, untimed",
        "processes": 1,
        "metric": METRIC,
        "best": {"fast": bf, "slow": bs},
        "best_value": best_v,
        "n_trades": n_trades[best_k],
        "points_with_denials_or_capped_buys": odd,
        "cli_identity": cli,
    }

    sweeps = [
        _sweep_run(b, per_point, (bf, bs))
        for b in filter(None, args.sweep_backends.split(","))
    ]  # fmt: skip

    for r in sweeps:  # what a worker delivers against one in-process loop: 1 - overhead
        workers = int(r["backend"].partition(":")[2])
        r["efficiency"] = round(r["backtests_per_s"] / (workers * ut["backtests_per_s"]), 3)

    comparisons = {}
    ok = cli["equal"] and all(r["equal_to_standalone"] and r["best_agrees"] for r in sweeps)
    for peer in peers:
        c = _compare(peer, per_point, n_trades, (bf, bs), digest, args.tol)
        comparisons[_label(peer)] = c
        ok = ok and c["ok"]
    load_after = os.getloadavg()

    rates = {_label(ut): ut["backtests_per_s"]}
    rates.update({f"ultrathink sweep ({r['backend']})": r["backtests_per_s"] for r in sweeps})
    rates.update({_label(peer): peer["backtests_per_s"] for peer in peers})
    summary = {
        "date": dt.date.today().isoformat(),
        "workload": {
            "data": "embedded:sp500",
            "n_bars": len(data),
            "data_sha256": digest,
            "grid": "fast 5..50 step 5, slow 20..200 step 5, fast < slow",
            "points": len(per_point),
            "metric": METRIC,
            "costs": "zero",
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
            "loadavg_1_5_15_after": [round(x, 2) for x in load_after],
        },
        "backtests_per_s": rates,
        "ultrathink": ut,
        "ultrathink_sweeps": sweeps,
        "ratios": _ratios(sweeps, peers),
        "peers": {
            _label(peer): {k: v for k, v in peer.items() if not k.startswith("per_point")}
            for peer in peers
        },
        "comparison": comparisons,
        "ok": ok,
        "ultrathink_per_point": per_point,
        "ultrathink_per_point_n_trades": n_trades,
    }
    out = args.out or HERE / "results" / f"sweep-{summary['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    short = {k: v for k, v in summary.items() if not k.startswith("ultrathink_per_point")}
    print(json.dumps(short, indent=1))
    print(f"written: {out}", file=sys.stderr)
    if not ok:
        print("SWEEP MISMATCH: a peer disagrees with ULTRATHINK", file=sys.stderr)
        return 1
    return 0


SWEEP_ARGS = ["--strategy", "sma_cross", "--grid", "fast=5:50:5", "--grid", "slow=20:200:5",
              "--where", "fast < slow", "--data", "sp500", "--metric", "total_return",
              "--json"]  # fmt: skip


def _sweep_run(backend: str, per_point: dict[str, float], best: tuple[int, int]) -> dict:
    """One `ultrathink sweep` of the grid on ``backend``: its rate, and every point checked
    bit for bit against the standalone backtests run above."""
    import sqlite3
    import tempfile

    kind, _, n = backend.partition(":")
    extra = ["--workers", n] + (["--ray", "local"] if kind == "ray" else [])
    exe = Path(sys.executable).with_name("ultrathink")
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
        env["ULTRATHINK_HOME"] = home
        t0 = time.perf_counter()
        done = subprocess.run([str(exe), "sweep", *SWEEP_ARGS, *extra], env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
        wall = time.perf_counter() - t0
        doc = json.loads(done.stdout)
        with sqlite3.connect(Path(home) / "ultrathink.db") as conn:
            rows = conn.execute("SELECT params_json, metrics_json FROM sweep_points").fetchall()
    values = {}
    for params, metrics in rows:
        pp = json.loads(params)
        values[key(pp["fast"], pp["slow"])] = json.loads(metrics)["total_return"]
    top = doc["best"][0]["params"]
    return {
        "backend": backend,
        "points": doc["points"],
        "backtests_per_s": doc["backtests_per_s"],
        "timed": "the driver's own clock: first point to last stored (Ray's start-up, "
        "Python's and the data's loading are in wall_s only)",
        "wall_s": round(wall, 3),
        "backtests_per_s_wall": round(doc["points"] / wall, 2),
        "equal_to_standalone": values == per_point,
        "best_agrees": (top["fast"], top["slow"]) == best,
    }


def _ratios(sweeps: list[dict[str, Any]], peers: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for r in sweeps:
        for peer in peers:
            if peer["engine"] == "vectorbt" and peer.get("exact") is False:
                continue
            name = f"sweep ({r['backend']}) / {_label(peer)}"
            out[name] = round(r["backtests_per_s"] / peer["backtests_per_s"], 2)
    return out


def _label(run: dict[str, Any]) -> str:
    n = run.get("processes", "?")
    return f"{run['engine']} ({n} process{'' if n == 1 else 'es'})"


def _compare(
    peer: dict[str, Any],
    ut_values: dict[str, float],
    ut_trades: dict[str, int],
    ut_best: tuple[int, int],
    digest: str,
    tol: float,
) -> dict[str, Any]:
    values = peer["per_point"]
    missing = sorted(set(ut_values) - set(values))
    diffs = {k: abs(values[k] - ut_values[k]) for k in ut_values if k in values}
    worst = max(diffs, key=lambda k: diffs[k]) if diffs else None
    trades = peer.get("per_point_n_trades", {})
    other_trades = {
        k: [trades.get(k), ut_trades[k]] for k in ut_trades if trades.get(k) != ut_trades[k]
    }
    best = (peer["best"]["fast"], peer["best"]["slow"])
    out = {
        "same_data": peer.get("data_sha256") == digest,
        "points_compared": len(diffs),
        "missing_points": missing,
        "max_abs_diff": diffs[worst] if worst else None,
        "max_abs_diff_at": worst,
        "max_rel_diff": max(
            (d / abs(ut_values[k]) for k, d in diffs.items() if ut_values[k] != 0), default=0.0
        ),
        "points_with_other_n_trades": other_trades,
        "best_agrees": best == ut_best,
        "best_value_abs_diff": abs(peer["best_value"] - ut_values[key(*ut_best)]),
        "n_trades_of_best_agrees": peer.get("n_trades") == ut_trades[key(*ut_best)],
    }
    out["ok"] = bool(
        out["same_data"] and not missing and out["max_abs_diff"] is not None
        and out["max_abs_diff"] <= tol and not other_trades and out["best_agrees"]
    )  # fmt: skip
    return out


def _cli_identity(f: int, s: int, value: float, trades: int, *, skip_subprocess: bool) -> dict:
    """The best point through the CLI's own call and the ``ultrathink`` command."""
    req = services.RunRequest(
        mode="backtest", strategy="sma_cross", params={"fast": str(f), "slow": str(s)},
        data="sp500", store=False,
    )  # fmt: skip
    res = services.execute_run(req)
    out: dict[str, Any] = {
        "point": key(f, s),
        "execute_run_total_return": res.metrics.total_return,
        "execute_run_n_trades": res.metrics.n_trades,
    }
    equal = res.metrics.total_return == value and res.metrics.n_trades == trades
    if not skip_subprocess:
        exe = Path(sys.executable).with_name("ultrathink")
        cmd = [str(exe), "backtest", "--strategy", "sma_cross", "--param", f"fast={f}",
               "--param", f"slow={s}", "--data", "sp500", "--no-store", "--json"]  # fmt: skip
        doc = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        out["cli_command"] = " ".join(["ultrathink", *cmd[1:]])
        out["cli_total_return"] = doc["total_return"]
        out["cli_n_trades"] = doc["n_trades"]
        out["cli_final_equity"] = doc["final_equity"]
        equal = equal and doc["total_return"] == value and doc["n_trades"] == trades
    out["equal"] = equal
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
