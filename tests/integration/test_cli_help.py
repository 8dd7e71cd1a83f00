"""Every command and subcommand answers --help (exit 0) and documents its options."""

from __future__ import annotations

import pytest

from ultrathink import __version__

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
    ("run",): ("--db", "--json", "--report"),
    ("data",): ("inspect", "validate", "generate"),
    ("data", "inspect"): ("spec", "--json"),
    ("data", "validate"): ("spec",),
    ("data", "generate"): ("spec", "--out"),
    ("runs",): ("list", "show", "--db", "--json"),
    ("runs", "list"): ("--limit", "--db", "--json"),
    ("runs", "show"): ("run_id", "--db", "--json"),
    ("audit",): ("verify",),
    ("audit", "verify"): ("--db", "--json"),
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
