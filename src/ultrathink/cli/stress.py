"""``ultrathink stress``: run stress scenarios, judge their thresholds, write the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ultrathink.cli._common import DB_HELP
from ultrathink.cli._registry import CliContext, Command, sub_parser


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub_parser(
        sub,
        "list",
        "the scenarios, what each does, its default thresholds",
        ("ultrathink stress list", "ultrathink stress list --json"),
    )
    listing.add_argument("--json", action="store_true", help="JSON output")
    listing.set_defaults(func=_list)
    run = sub_parser(
        sub,
        "run",
        "run one scenario (a shipped name or a scenario file NAME.toml)",
        (
            "ultrathink stress run crash --quick",
            "ultrathink stress run chaos --seed 3",
            "ultrathink stress run broker --thresholds strict.toml --json",
        ),
    )
    run.add_argument("scenario", metavar="SCENARIO", help="a name from `stress list`, or FILE.toml")
    _run_options(run)
    run.set_defaults(func=_run)
    suite = sub_parser(
        sub,
        "suite",
        "run every scenario of the suite (those with in_suite = true)",
        ("ultrathink stress suite --quick", "ultrathink stress suite --report stress-report"),
    )
    _run_options(suite)
    suite.set_defaults(func=_suite)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quick",
        action="store_true",
        help="the small version of each scenario (the [quick] table of its file)",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="replace the scenario's seed (the same seed gives the same faults)",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="the scenario's duration, where it has one (resources: the CPU contention phase)",
    )
    p.add_argument(
        "--thresholds",
        metavar="FILE.toml",
        help='override or add thresholds per scenario: crash = ["max_halt_lag_bars <= 0"]',
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        help="where the JSON and HTML reports and the work files go (default "
        ".ultrathink/stress next to the store)",
    )
    p.add_argument("--json", action="store_true", help="print the report's JSON")
    p.add_argument("--db", help=f"{DB_HELP}; only locates the default --report directory")


def _list(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink.stress.scenario import load_scenario, shipped_scenarios

    configs = [load_scenario(name) for name in shipped_scenarios()]
    if args.json:
        json.dump(
            [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "description": c.description,
                    "in_suite": c.in_suite,
                    "note": c.note,
                    "seed": c.seed,
                    "thresholds": [t.text for t in c.thresholds],
                    "metrics": c.metrics,
                }
                for c in configs
            ],
            sys.stdout,
            indent=1,
        )
        print()
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("scenario", "suite", "description", "default thresholds")
    for c in configs:
        table.add_row(
            c.name,
            "yes" if c.in_suite else "no",
            c.description + (f"\n[dim]{c.note}[/dim]" if c.note else ""),
            "\n".join(t.text for t in c.thresholds),
        )
    Console().print(table)
    return 0


def _run(args: argparse.Namespace, context: CliContext) -> int:
    return _execute([args.scenario], args.scenario, args)


def _suite(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink.stress.runner import suite_names

    return _execute(suite_names(), "suite", args)


def _execute(names: list[str], label: str, args: argparse.Namespace) -> int:
    from ultrathink import services
    from ultrathink.stress import report
    from ultrathink.stress.runner import RunOptions, load_overrides, resolve, run_scenarios

    options = RunOptions(
        quick=args.quick,
        seed=args.seed,
        duration_s=args.duration,
        thresholds_file=Path(args.thresholds) if args.thresholds else None,
    )
    configs = resolve(names, options)
    overrides = load_overrides(options.thresholds_file, configs)
    report_dir = (
        Path(args.report) if args.report else services.resolve_db(args.db).parent / "stress"
    )
    reports = run_scenarios(configs, report_dir, overrides, _log)
    name = configs[0].name if label != "suite" else "suite"
    doc, json_path, html_path = report.write(report_dir, name, reports, options)
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        print()
    else:
        for scenario in doc["scenarios"]:
            _print_scenario(scenario)
        print(f"report: {html_path} (JSON: {json_path})")
    for line in doc["breached"]:
        print(line, file=sys.stderr)
    return 0 if doc["ok"] else 1


def _print_scenario(s: dict[str, Any]) -> None:
    cases = s["cases"]
    skipped = [c for c in cases if c["skipped"]]
    inv = s["invariants"]
    print(
        f"stress {s['name']}{' (quick)' if s['quick'] else ''}, seed {s['seed']}: "
        f"{len(cases) - len(skipped)} cases ({len(skipped)} skipped), {inv['checked']} "
        f"invariants checked, {inv['failed']} failed, in {s['elapsed_s']:.1f} s"
    )
    for t in s["thresholds"]:
        measured = "—" if t["measured"] is None else _fmt(t["measured"])
        print(f"  {t['status']:<12} {t['threshold']:<40} measured {measured}")
    judged = {t["metric"] for t in s["thresholds"]}
    extra = {k: v for k, v in s["metrics"].items() if k not in judged and v is not None}
    if extra:
        print("  also measured: " + ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items()))
    for c in skipped:
        print(f"  skipped {c['name']}: {c['skipped']}")
    for c in cases:
        for i in c["invariants"]:
            if not i["ok"]:
                print(f"  invariant {i['name']} fails in {c['name']}: {i['detail']}")


def _fmt(value: float) -> str:
    from ultrathink.stress.thresholds import format_number

    return format_number(round(value, 4))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


COMMAND = Command(
    name="stress",
    order=95,
    help="stress scenarios: crashes, broker faults, resources, kill -9 chaos; thresholds",
    description="Run declarative stress scenarios against the real engine and check, in "
    "every one, that each order ends terminal with a reason, that no order or fill is lost or "
    "duplicated against the paper venue's journal, that cash plus positions equals equity, "
    "that the audit chain verifies and that nothing crashed. Each scenario's thresholds "
    "(k6 style: `lost_orders == 0`) decide the exit code: 0 when all hold, 1 when one is "
    "breached, 2 for bad input. Reports (JSON and HTML) go to .ultrathink/stress/.",
    examples=(
        "ultrathink stress list",
        "ultrathink stress run crash --quick",
        "ultrathink stress suite --quick --json",
        "ultrathink stress run chaos --seed 5 --report /tmp/stress",
    ),
    configure=_configure,
)
