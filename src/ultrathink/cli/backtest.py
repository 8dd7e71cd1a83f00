"""``ultrathink backtest``: a strategy over historical data, as fast as possible."""

from __future__ import annotations

import argparse

from ultrathink.cli._registry import CliContext, Command
from ultrathink.cli._run_options import add_run_options, run_request, strategies_help


def _configure(p: argparse.ArgumentParser) -> None:
    add_run_options(p, "backtest")


def _handle(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink.cli._run import execute

    return execute(run_request(args, "backtest"), context, as_json=args.json)


COMMAND = Command(
    name="backtest",
    order=10,
    help="run a strategy over historical data, as fast as possible",
    description="Replay bars through a strategy, pre-trade risk, the paper broker and the "
    "portfolio, as fast as possible. Costs and limits are off by default so results compare "
    "with other engines; every run is stored (SQLite, with an audit trail).",
    examples=(
        "ultrathink backtest --param fast=10 --param slow=30 --report report.html",
        "ultrathink backtest --data synthetic:n_bars=1000000 --json --no-store",
        "ultrathink backtest --strategy my_strategy.py --data prices.csv --commission-bps 1",
    ),
    configure=_configure,
    handler=_handle,
    epilog=strategies_help,
)
