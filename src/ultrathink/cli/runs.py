"""``ultrathink runs``: past runs from the store (read-only)."""

from __future__ import annotations

import argparse

from ultrathink.cli._common import DB_HELP, add_group_flags
from ultrathink.cli._registry import CliContext, Command, sub_parser


def _handle(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services
    from ultrathink.cli._output import print_run, print_runs

    db = services.resolve_db(args.db)
    if args.runs_cmd == "show":
        print_run(services.show_run(db, args.run_id), as_json=args.json)
        return 0
    if args.limit < 1:
        from ultrathink.errors import ConfigError

        raise ConfigError(f"--limit must be >= 1, was {args.limit}")
    print_runs(services.list_runs(db, args.limit), as_json=args.json)
    return 0


def _configure(p: argparse.ArgumentParser) -> None:
    add_group_flags(p, "--db", DB_HELP)
    rsub = p.add_subparsers(dest="runs_cmd", metavar="ACTION")
    lst = sub_parser(
        rsub, "list", "newest runs first (default)", ("ultrathink runs list --limit 5",)
    )
    lst.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    show = sub_parser(rsub, "show", "one run in detail", ("ultrathink runs show 1",))
    show.add_argument("run_id", type=int)
    for leaf in (lst, show):
        add_group_flags(leaf, "--db", DB_HELP)
    p.set_defaults(runs_cmd="list", limit=20, db=None, json=False)


COMMAND = Command(
    name="runs",
    order=60,
    help="past runs from the store",
    description="List the stored runs (newest first) or show one. The store is opened "
    "read-only, so this works on a store you cannot write.",
    examples=("ultrathink runs", "ultrathink runs show 1 --json"),
    configure=_configure,
    handler=_handle,
)
