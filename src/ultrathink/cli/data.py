"""``ultrathink data``: inspect, validate, generate or replay (as a live feed) market data."""

from __future__ import annotations

import argparse
from pathlib import Path

from ultrathink.cli import _data_feed
from ultrathink.cli._registry import CliContext, Command, sub_parser


def _handle(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services

    if args.data_cmd == "feed":
        return _data_feed.run(args)
    if args.data_cmd == "generate":
        data = services.generate_data(args.spec, Path(args.out))
        print(f"wrote {len(data):,} bars of {len(data.symbols)} symbol(s) to {args.out}")
        return 0
    data = services.load(args.spec)
    if args.data_cmd == "validate":
        print(
            f"OK: {args.spec}: {len(data):,} bars, {len(data.symbols)} symbol(s), "
            "all validation rules pass"
        )
        return 0
    from ultrathink.cli._output import print_frame

    frame = services.inspect_data(data)
    if args.json:
        print(frame.to_json(orient="records", indent=1))
    else:
        print_frame(frame, title=f"{data.name}: {len(data):,} bars, sha256 {data.sha256()[:12]}")
    return 0


def _configure(p: argparse.ArgumentParser) -> None:
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="ACTION")
    i = sub_parser(
        dsub,
        "inspect",
        "summarise a dataset, file or synthetic spec",
        ("ultrathink data inspect sp500", "ultrathink data inspect prices.csv --json"),
    )
    i.add_argument("spec", help="sp500 | nasdaq | PATH | synthetic:...")
    i.add_argument("--json", action="store_true", help="JSON output")
    v = sub_parser(
        dsub,
        "validate",
        "check a file against every validation rule",
        ("ultrathink data validate prices.csv",),
    )
    v.add_argument("spec", help="PATH.csv | PATH.parquet (or any data spec)")
    g = sub_parser(
        dsub,
        "generate",
        "write seeded synthetic data (crashes, gaps, halts) to a file",
        (
            'ultrathink data generate "synthetic:n_bars=5000,seed=7,symbols=AAA+BBB,'
            'crash=30@2500/20" --out demo.parquet',
        ),
    )
    g.add_argument("spec", help="e.g. 'synthetic:n_bars=10000,seed=7,crash=20@5000/50'")
    g.add_argument("--out", required=True, help="PATH.csv, PATH.csv.gz or PATH.parquet")
    _data_feed.add_parser(dsub)


COMMAND = Command(
    name="data",
    order=80,
    help="inspect, validate, generate or replay market data (as a live feed)",
    description="The embedded datasets (sp500, nasdaq: daily, 1999-2018), CSV and Parquet "
    "files, and a seeded synthetic generator. Files are validated row by row. `data feed` "
    "replays a dataset as a live feed on loopback for `paper --feed`.",
    examples=(
        "ultrathink data inspect sp500",
        "ultrathink data validate broken.csv",
        "ultrathink data feed --port 9100",
    ),
    configure=_configure,
    handler=_handle,
)
