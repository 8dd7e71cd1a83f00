"""Peer comparison: the same SMA(10/30) crossover on the same bars in ULTRATHINK, backtrader
and NautilusTrader; throughput ratios from one job, after checking the trades are equal.

Run with the project's venv (``make bench-peers`` does)::

    .venv/bin/python bench/peers/compare_peers.py --bars 1000000 --repeats 3

Each engine runs in its own environment and in a fresh process per repeat (runners
``run_<engine>.py``); repeats are interleaved engine by engine (round r runs every engine
once, the order rotating each round). Throughput is bars / wall time of the timed region,
median over the repeats. Exits 1 when the engines' fills differ, 2 on a setup error.
See README.md for what each engine times and how the engines' semantics are aligned.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from common import Bars  # noqa: E402

ENGINES = ("ultrathink", "backtrader", "nautilus")
RUNNERS = {e: HERE / f"run_{e}.py" for e in ENGINES}
PRICE_RTOL = 1e-9


def main() -> int:
    args = _parse()
    pythons = {
        "ultrathink": args.ut_python,
        "backtrader": args.bt_python,
        "nautilus": args.nt_python,
    }
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINES:
            return _fail(f"unknown engine {e!r}; known: {', '.join(ENGINES)}")
        if not Path(pythons[e]).exists():
            return _fail(f"{e}: no interpreter at {pythons[e]} (make bench-peers creates it)")
    if "ultrathink" not in engines:
        return _fail("ultrathink must be one of the engines: the ratios are relative to it")

    data = Path(args.data or HERE / "data" / f"synthetic-n{args.bars}-s{args.seed}.parquet")
    spec = f"synthetic:n_bars={args.bars},seed={args.seed}"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        cli = Path(args.ut_python).with_name("ultrathink")
        print(f"generating {data} ({spec})", file=sys.stderr)
        subprocess.run([str(cli), "data", "generate", spec, "--out", str(data)], check=True)
    bars = Bars(str(data))

    strategy_args = ["--fast", str(args.fast), "--slow", str(args.slow),
                     "--qty", str(args.qty), "--cash", str(args.cash)]  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        for r in range(args.repeats):
            order = engines[r % len(engines) :] + engines[: r % len(engines)]
            for e in order:
                out = Path(tmp) / f"{e}-{r}.json"
                cmd = [pythons[e], str(RUNNERS[e]), "--data", str(data), "--out", str(out),
                       *strategy_args]  # fmt: skip
                print(f"[round {r + 1}/{args.repeats}] {e} ...", file=sys.stderr, flush=True)
                subprocess.run(cmd, check=True, cwd=ROOT, env=_env())
                runs[e].append(json.loads(out.read_text()))
        persisted = None
        if not args.no_persisted:
            out = Path(tmp) / "ultrathink-persisted.json"
            db = Path(tmp) / "peers.db"
            cmd = [pythons["ultrathink"], str(RUNNERS["ultrathink"]), "--data", str(data),
                   "--out", str(out), "--persist", str(db), *strategy_args]  # fmt: skip
            print("[once] ultrathink, persisted ...", file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT, env=_env())
            persisted = json.loads(out.read_text())
        diagnostic = None
        if "nautilus" in engines and not args.no_diagnostic:
            out = Path(tmp) / "nautilus-no-analyzer.json"
            cmd = [pythons["nautilus"], str(RUNNERS["nautilus"]), "--data", str(data),
                   "--out", str(out), "--no-trade-analyzer", *strategy_args]  # fmt: skip
            print("[once] nautilus, trade analyzer off (diagnostic) ...", file=sys.stderr)
            subprocess.run(cmd, check=True, cwd=ROOT, env=_env())
            diagnostic = json.loads(out.read_text())
    load_after = os.getloadavg()

    reference = runs["ultrathink"][0]["fills"]
    checks = {e: [_compare(reference, run["fills"]) for run in runs[e]] for e in engines}
    if persisted is not None:
        checks["ultrathink_persisted"] = [_compare(reference, persisted["fills"])]
    prices = {e: _price_source(bars, runs[e][0]["fills"], e) for e in engines}
    if diagnostic is not None:
        checks["nautilus_no_analyzer"] = [_compare(reference, diagnostic["fills"])]
    summary = _summary(args, data, spec, bars, runs, persisted, checks, prices)
    summary["machine"]["loadavg_1_5_15_before"] = [round(x, 2) for x in load_before]
    summary["machine"]["loadavg_1_5_15_after"] = [round(x, 2) for x in load_after]
    if diagnostic is not None:
        rate = len(bars) / diagnostic["run_s"]
        summary["nautilus_no_trade_analyzer"] = {
            "note": "diagnostic, once: PortfolioAnalyzer.record_trade made a no-op (it does a "
            "pd.concat per closed trade); not used for the ratio",
            "run_s": diagnostic["run_s"],
            "bars_per_s": rate,
            "ultrathink_ratio": summary["engines"]["ultrathink"]["bars_per_s"] / rate,
        }

    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"peers-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    _print_table(summary)
    print(f"\nwritten: {path}")
    ok = all(c["equal"] for cs in checks.values() for c in cs)
    ok = ok and all(p["ok"] for p in prices.values())
    if not ok:
        print("TRADE MISMATCH: the engines did not produce the same fills", file=sys.stderr)
        return 1
    return 0


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bars", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--data", help="an existing single-symbol 1-minute Parquet bar file")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--fast", type=int, default=10)
    p.add_argument("--slow", type=int, default=30)
    p.add_argument("--qty", type=float, default=100.0)
    p.add_argument("--cash", type=float, default=100_000.0)
    p.add_argument("--ut-python", default=sys.executable)
    p.add_argument("--bt-python", default=str(HERE / ".venv-bt" / "bin" / "python"))
    p.add_argument("--nt-python", default=str(HERE / ".venv-nt" / "bin" / "python"))
    p.add_argument("--no-persisted", action="store_true", help="skip the persisted ULTRATHINK run")
    p.add_argument(
        "--no-diagnostic",
        action="store_true",
        help="skip the once-only NautilusTrader run without its trade analyzer",
    )
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    env["PYTHONWARNINGS"] = "ignore"  # a peer's deprecation warnings are not ours to fix
    return env


def _fail(msg: str) -> int:
    print(f"compare_peers: {msg}", file=sys.stderr)
    return 2


def _compare(ref: list[list[Any]], got: list[list[Any]]) -> dict[str, Any]:
    """Same count, same (fill time, side, quantity) sequence, prices within 1e-9 relative."""
    out: dict[str, Any] = {"n_ref": len(ref), "n": len(got), "max_rel_price_diff": 0.0}
    first = None
    for i, (a, b) in enumerate(zip(ref, got, strict=False)):
        rel = abs(a[3] - b[3]) / max(abs(a[3]), 1e-300)
        out["max_rel_price_diff"] = max(out["max_rel_price_diff"], rel)
        if first is None and (a[0] != b[0] or a[1] != b[1] or a[2] != b[2] or rel > PRICE_RTOL):
            first = {"index": i, "ref": a, "got": b}
    if first is None and len(ref) != len(got):
        i = min(len(ref), len(got))
        first = {"index": i, "ref": ref[i] if i < len(ref) else None,
                 "got": got[i] if i < len(got) else None}  # fmt: skip
    out["first_mismatch"] = first
    out["equal"] = first is None
    return out


def _price_source(bars: Bars, fills: list[list[Any]], engine: str) -> dict[str, Any]:
    """Check each fill against the data: the bar it belongs to and the price it took.

    ULTRATHINK and backtrader fill at the open of the bar after the signal, stamped with that
    bar's (open) time. NautilusTrader fills at the close of the signal bar, stamped with that
    bar's close time: the same instant, and on this data (open[t+1] == close[t]) the same
    price. ``gap_fills`` counts fills on bars whose open differs from the previous close:
    there NautilusTrader's price would differ by design.
    """
    if not fills:
        return {"ok": True, "n": 0}
    ts = np.array([f[0] for f in fills], dtype=np.int64)
    px = np.array([f[3] for f in fills], dtype=np.float64)
    k = np.searchsorted(bars.ts, ts)
    on_bar = (k < len(bars)) & (bars.ts[np.minimum(k, len(bars) - 1)] == ts)
    if engine == "nautilus":
        expected, rule = bars.close[k - 1], "close of the signal bar (t), at its close time"
    else:
        expected, rule = bars.open[np.minimum(k, len(bars) - 1)], "open of the next bar (t+1)"
    rel = np.abs(px - expected) / np.abs(expected)
    gaps = bars.open[1:] != bars.close[:-1]
    gap_fills = int(np.sum(gaps[np.clip(k - 1, 0, len(gaps) - 1)]))
    ok = bool(on_bar.all() and (k >= 1).all() and (rel <= PRICE_RTOL).all())
    return {"ok": ok, "n": len(fills), "rule": rule, "max_rel_diff": float(rel.max()),
            "gap_fills": gap_fills}  # fmt: skip


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    mem_gb = None
    with contextlib.suppress(ValueError, OSError):
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "mem_gb": mem_gb, "hostname": platform.node()}  # fmt: skip


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _summary(
    args: argparse.Namespace,
    data: Path,
    spec: str,
    bars: Bars,
    runs: dict[str, list[dict[str, Any]]],
    persisted: dict[str, Any] | None,
    checks: dict[str, list[dict[str, Any]]],
    prices: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    engines: dict[str, Any] = {}
    for e, rs in runs.items():
        run_s = [r["run_s"] for r in rs]
        med = statistics.median(run_s)
        extra = {k: v for k, v in rs[0].items()
                 if k not in ("fills", "engine", "run_s", "load_s", "n_bars")}  # fmt: skip
        for key in ("preload_s", "run_incl_preload_s", "engine_elapsed_s"):
            if key in rs[0]:
                extra[key] = [r[key] for r in rs]
        engines[e] = {
            "version": rs[0]["version"],
            "python": rs[0]["python"],
            "run_s": run_s,
            "median_run_s": med,
            "bars_per_s": len(bars) / med,
            "load_s": [r["load_s"] for r in rs],
            "n_fills": rs[0]["n_fills"],
            "n_round_trips": rs[0]["n_fills"] // 2,
            **extra,
        }
    ut = engines["ultrathink"]["bars_per_s"]
    ratios = {
        f"ultrathink/{e}": ut / engines[e]["bars_per_s"] for e in engines if e != "ultrathink"
    }
    out: dict[str, Any] = {
        "benchmark": "peers: sma_cross fast=10 slow=30, 100 units, long only, zero costs",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "data": {"file": str(data.relative_to(ROOT) if data.is_relative_to(ROOT) else data),
                 "spec": spec if not args.data else None, "n_bars": len(bars),
                 "sha256": _sha256(data),
                 "bars_with_open_ne_prev_close": int(np.sum(bars.open[1:] != bars.close[:-1]))},
        "params": {"fast": args.fast, "slow": args.slow, "qty": args.qty, "cash": args.cash},
        "repeats": args.repeats,
        "timing": "bars / wall time (time.perf_counter) of each engine's run, median of repeats;"
        " data loading excluded for all; see bench/peers/README.md",
        "engines": engines,
        "ratios": ratios,
        "trade_equality": {e: {"equal": all(c["equal"] for c in cs), "checks": cs}
                           for e, cs in checks.items()},
        "fill_prices_vs_data": prices,
    }  # fmt: skip
    if persisted is not None:
        out["ultrathink_persisted"] = {
            "run_s": persisted["run_s"],
            "bars_per_s": len(bars) / persisted["run_s"],
            "engine_elapsed_s": persisted["engine_elapsed_s"],
            "engine_bars_per_s": len(bars) / persisted["engine_elapsed_s"],
            "n_fills": persisted["n_fills"],
        }
    return out


def _print_table(s: dict[str, Any]) -> None:
    n = s["data"]["n_bars"]
    print(f"\n{n:,} bars, sma_cross {s['params']['fast']}/{s['params']['slow']}, "
          f"median of {s['repeats']} ({s['date']}, {s['machine']['cpu']}, "
          f"{s['machine']['cores']} cores)\n")  # fmt: skip
    head = f"{'engine':<24}{'version':<12}{'median s':>10}{'bars/s':>14}{'fills':>8}"
    print(head + f"{'ULTRATHINK ×':>14}{'same fills':>12}")
    print("-" * (len(head) + 26))
    for e, r in s["engines"].items():
        ratio = s["ratios"].get(f"ultrathink/{e}")
        eq = (
            "yes" if s["trade_equality"][e]["equal"] and s["fill_prices_vs_data"][e]["ok"] else "NO"
        )
        print(f"{e:<24}{r['version']:<12}{r['median_run_s']:>10.3f}{r['bars_per_s']:>14,.0f}"
              f"{r['n_fills']:>8}{(f'{ratio:.1f}' if ratio else '1.0'):>14}{eq:>12}")  # fmt: skip
    p = s.get("ultrathink_persisted")
    if p:
        eq = "yes" if s["trade_equality"]["ultrathink_persisted"]["equal"] else "NO"
        print(f"{'ultrathink (persisted)':<24}{'':<12}{p['run_s']:>10.3f}{p['bars_per_s']:>14,.0f}"
              f"{p['n_fills']:>8}{'(once)':>14}{eq:>12}")  # fmt: skip
    d = s.get("nautilus_no_trade_analyzer")
    if d:
        eq = "yes" if s["trade_equality"]["nautilus_no_analyzer"]["equal"] else "NO"
        print(f"{'nautilus (no analyzer)':<24}{'':<12}{d['run_s']:>10.3f}{d['bars_per_s']:>14,.0f}"
              f"{'':>8}{d['ultrathink_ratio']:>14.1f}{eq:>12}   diagnostic, once")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
