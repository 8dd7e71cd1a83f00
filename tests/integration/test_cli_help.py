"""Every command and subcommand answers --help (exit 0) and documents its options."""

from __future__ import annotations

import argparse

import pytest

from ultrathink import __version__
from ultrathink.cli import build_parser


def every_command(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Walk the parser: every command path, with its parser."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_command(sub, (*path, name))


ALL_COMMANDS = [path for path, _ in every_command(build_parser())]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help_a_description_and_an_example(cli, command) -> None:
    result = cli(*command, "--help")

    assert result.code == 0, result.err
    assert result.err == ""
    assert result.out.startswith(f"usage: ultrathink {' '.join(command)}".rstrip())
    _head, _, body = result.out.partition("\n\n")
    assert body.strip(), f"`{' '.join(command)} --help` has no description"
    assert "examples:\n  ultrathink" in result.out, f"`{' '.join(command)}` has no example"


def test_the_walk_reaches_every_command() -> None:
    tops = {c[0] for c in ALL_COMMANDS if len(c) == 1}
    assert tops >= {"backtest", "paper", "run", "ctl", "data", "runs", "audit", "train",
                    "models", "bench", "profile"}  # fmt: skip
    assert ("ctl", "sessions") in ALL_COMMANDS and ("audit", "verify") in ALL_COMMANDS


def test_backtest_help_lists_each_strategy_and_its_parameters(cli) -> None:
    out = cli("backtest", "--help").out

    assert "sma_cross:" in out and "fast=10, slow=30, long_short=False" in out
    assert "buy_and_hold:" in out
    assert "ml:" in out and "entry_threshold=0.55" in out


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("backtest", ("fee in bps of fill notional (default 0)", "(defaults of backtest)")),
        ("paper", ("fee in bps of fill notional (default 1)", "(defaults of paper)",
                   "daily loss limit (default 5)")),
    ],
)  # fmt: skip
def test_run_commands_show_their_own_defaults(cli, command: str, shown: tuple[str, ...]) -> None:
    out = " ".join(cli(command, "--help").out.split())  # argparse wraps lines

    for text in shown:
        assert text in out


RUN_OPTIONS = (
    "--strategy", "--param", "--data", "--start", "--end", "--cash", "--quantity", "--all-in",
    "--commission-bps", "--fee-per-order", "--slippage-bps", "--latency-ms", "--max-volume-pct",
    "--max-drawdown-pct", "--max-daily-loss-pct", "--max-position-qty", "--max-order-notional",
    "--config", "--db", "--no-store", "--json", "--report",
)  # fmt: skip

HELP_CASES: dict[tuple[str, ...], tuple[str, ...]] = {
    (): (
        "backtest",
        "paper",
        "run",
        "data",
        "runs",
        "audit",
        "ctl",
        "bench",
        "profile",
        "--version",
    ),
    ("backtest",): RUN_OPTIONS,
    ("paper",): (*RUN_OPTIONS, "--speed", "--resume", "--no-control"),
    ("bench",): (
        "--quick",
        "--filter",
        "--repeats",
        "--warmup",
        "--json",
        "--plots",
        "--compare",
        "--min-effect",
    ),
    ("run",): ("--db", "--json", "--report", "--registry"),
    ("data",): ("inspect", "validate", "generate"),
    ("data", "inspect"): ("spec", "--json"),
    ("data", "validate"): ("spec",),
    ("data", "generate"): ("spec", "--out"),
    ("runs",): ("list", "show", "--db", "--json"),
    ("runs", "list"): ("--limit", "--db", "--json"),
    ("runs", "show"): ("run_id", "--db", "--json"),
    ("audit",): ("verify",),
    ("audit", "verify"): ("--db", "--json", "--expect-head"),
}


@pytest.mark.parametrize("command", list(HELP_CASES), ids=lambda c: " ".join(c) or "top")
def test_help_exits_0_and_lists_options(cli, command: tuple[str, ...]) -> None:
    expected = HELP_CASES[command]

    result = cli(*command, "--help")

    assert result.code == 0
    assert result.out.startswith(f"usage: ultrathink {' '.join(command)}".rstrip())
    for option in expected:
        assert option in result.out, f"{option} missing from `{' '.join(command)} --help`"
    assert result.err == ""


def test_version_prints_package_version(cli) -> None:
    result = cli("--version")

    assert result.code == 0
    assert result.out.strip() == f"ultrathink {__version__}"


@pytest.mark.parametrize(
    "argv",
    [(), ("data",), ("audit",), ("backtest", "--bogus"), ("runs", "show", "not-an-int")],
    ids=["no-command", "data-no-action", "audit-no-action", "unknown-option", "bad-run-id"],
)
def test_usage_errors_exit_2_with_usage_and_no_traceback(cli, argv: tuple[str, ...]) -> None:
    result = cli(*argv)

    assert result.code == 2
    assert "usage: ultrathink" in result.err
    assert "Traceback" not in result.err


def test_console_script_help_in_a_real_subprocess(cli_subprocess) -> None:
    result = cli_subprocess("--help")

    assert result.code == 0
    for command in ("backtest", "paper", "run", "data", "runs", "audit"):
        assert command in result.out


def test_console_script_backtest_help_in_a_real_subprocess(cli_subprocess) -> None:
    result = cli_subprocess("paper", "--help")

    assert result.code == 0
    for option in (*RUN_OPTIONS, "--speed"):
        assert option in result.out
