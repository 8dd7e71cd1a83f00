"""``ultrathink paper``: paper-trade a replay paced by the live clock, or resume one."""

from __future__ import annotations

import argparse

from ultrathink.cli._registry import CliContext, Command
from ultrathink.cli._run_options import add_run_options, run_request, strategies_help


def _configure(p: argparse.ArgumentParser) -> None:
    add_run_options(p, "paper")


def _handle(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink.cli._run import execute

    return execute(run_request(args, "paper"), context, as_json=args.json)


COMMAND = Command(
    name="paper",
    order=20,
    help="paper-trade a replay paced by the live clock (steer it with `ctl`)",
    description="Trade bars at a multiple of real time on the same components as a "
    "backtest, with realistic costs, production risk limits, circuit breakers and a kill "
    "switch. `ultrathink ctl` steers the running session; Ctrl-C stops it at the next bar "
    "with everything stored; `--resume RUN_ID` continues it exactly, even after kill -9.",
    examples=(
        "ultrathink paper --data demo.parquet --speed 86400",
        "ultrathink paper --speed max --no-store",
        "ultrathink paper --resume 3",
    ),
    configure=_configure,
    handler=_handle,
    epilog=strategies_help,
)
