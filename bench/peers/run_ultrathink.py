"""ULTRATHINK side of the peer comparison: ``sma_cross`` fast/slow, fixed quantity, zero costs.

Runs in the project's own venv, in-process through ``ultrathink.services`` — the same calls
``ultrathink backtest --strategy sma_cross --param fast=10 --param slow=30 --data FILE
--quantity 100 --no-store`` makes (``--persist DB`` adds ``--db DB``: the default, persisted
path). Timed: ``services.run_strategy`` from the call to its return — kernel construction,
every bar, order handling and fills, the final metrics (and with ``--persist`` the store
writes up to the last commit). Not timed: reading the file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import arg_parser, write_result

import ultrathink
from ultrathink import services


def main() -> int:
    p = arg_parser(__doc__)
    p.add_argument("--persist", metavar="DB", help="store the run in this SQLite file")
    args = p.parse_args()

    t0 = time.perf_counter()
    data = services.load(args.data)
    load_s = time.perf_counter() - t0
    config = services.engine_config(
        realistic=False,  # backtest defaults: zero fees, zero slippage, no latency
        overrides={
            "starting_cash": args.cash,
            "sizing": {"mode": "fixed", "quantity": args.qty},
            "broker": {},
            "risk": {},
        },
    )
    strategy = services.make_strategy("sma_cross", {"fast": args.fast, "slow": args.slow})
    db = Path(args.persist) if args.persist else None
    if db is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)

    t0 = time.perf_counter()
    result = services.run_strategy(strategy, data, config, db_path=db)
    run_s = time.perf_counter() - t0

    write_result(
        args.out,
        {
            "engine": "ultrathink",
            "version": ultrathink.__version__,
            "mode": "persisted" if db is not None else "no-store",
            "n_bars": len(data),
            "load_s": load_s,
            "run_s": run_s,
            "engine_elapsed_s": result.elapsed_s,  # the engine's own timer (kernel loop)
            "orders": result.order_counts,
            "n_denied": result.n_denied,
            "fills": [[f.ts_ns, f.side.value, f.quantity, f.price] for f in result.fills],
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
