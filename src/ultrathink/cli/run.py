"""``ultrathink run``: the main job — train if needed, then trade the ML ensemble."""

from __future__ import annotations

import argparse
import sys

from ultrathink.cli._registry import CliContext, Command
from ultrathink.cli._run_options import add_model_server_options, model_server_fields

#: The main job trains on 1999-2012 and trades 2013-2018 out of sample.
RUN_TRAIN_END, RUN_TRADE_START = "2012-12-31", "2013-01-01"
#: By the end of 2018 the model is up to six years past its training data.
RUN_MAX_MODEL_AGE_DAYS = "2300"


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", help="SQLite store (default .ultrathink/ultrathink.db)")
    p.add_argument("--registry", metavar="DIR", help="model registry (default .ultrathink/models)")
    add_model_server_options(p)
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument(
        "--report", metavar="PATH.html", help="HTML report (default .ultrathink/reports/run.html)"
    )


def _handle(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services
    from ultrathink.cli._run import execute

    report = args.report or str(services.resolve_db(args.db).parent / "reports" / "run.html")
    services.check_output_path(report, "--report")
    _train_if_needed(args)
    request = services.RunRequest(
        mode="run",
        strategy="ml",
        data="sp500",
        start=RUN_TRADE_START,
        params={"max_model_age_days": RUN_MAX_MODEL_AGE_DAYS},
        registry=args.registry,
        db=args.db,
        report=report,
        **model_server_fields(args),
    )
    return execute(request, context, as_json=args.json)


def _train_if_needed(args: argparse.Namespace) -> None:
    from ultrathink import services
    from ultrathink.cli.train import print_training

    registry = services.registry_root(args.registry, args.db)
    if services.model_registry(registry).latest() is not None:
        return
    out = sys.stderr if args.json else sys.stdout  # --json keeps stdout for the summary
    print(
        f"no model in {registry}: training the default ensemble on sp500 "
        f"1999-01-04..{RUN_TRAIN_END} (purged walk-forward report first)",
        file=out,
    )
    data = services.slice_data(services.load("sp500"), None, RUN_TRAIN_END)
    source = {"data": "sp500", "start": None, "end": RUN_TRAIN_END, "symbol": None}
    result, paths = services.train_model(data, {}, registry, source=source)
    services.model_registry(registry).promote(result.version)
    print_training(result, paths, out)


COMMAND = Command(
    name="run",
    order=30,
    help="main job: train the ML ensemble if none exists, then trade it on the S&P 500",
    description="Train the default ensemble on 1999-2012 (purged walk-forward report first) "
    "if the registry has no model, promote it, then trade it out of sample on 2013-2018 with "
    "realistic costs and production limits. Writes an HTML report.",
    examples=("ultrathink run", "ultrathink run --json --db /tmp/u.db"),
    configure=_configure,
    handler=_handle,
)
