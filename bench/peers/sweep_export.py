"""Export the embedded sp500 bars for the sweep peers (run with the project's venv).

``services.load("sp500")`` (what ``ultrathink backtest --data sp500`` reads) written with
ULTRATHINK's own ``save_parquet``: one symbol, timestamp as UTC nanoseconds, prices in full
float64 precision, so the peers see exactly the bars ULTRATHINK sees::

    .venv/bin/python bench/peers/sweep_export.py --out bench/peers/data/sp500.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep_common import Bars, data_digest

from ultrathink import services
from ultrathink.data.loaders import save_parquet


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--dataset", default="sp500")
    args = p.parse_args()
    data = services.load(args.dataset)
    want = data_digest(data.ts_ns, data.open, data.close)
    if args.out.exists() and Bars(str(args.out)).digest() == want:
        print(f"{args.out}: up to date ({len(data):,} bars of {data.name})", file=sys.stderr)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_parquet(data, args.out)
    if Bars(str(args.out)).digest() != want:
        raise SystemExit(f"{args.out}: the written bars do not read back identically")
    print(f"wrote {args.out}: {len(data):,} bars of {data.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
