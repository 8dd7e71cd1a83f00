"""``ultrathink audit verify``: check the store's tamper-evident audit trail."""

from __future__ import annotations

import argparse
import json

from ultrathink.cli._common import DB_HELP
from ultrathink.cli._registry import CliContext, Command, sub_parser


def _handle(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services

    report = services.audit_verify(services.resolve_db(args.db), args.expect_head)
    if args.json:
        out = {
            "ok": report.ok,
            "n_rows": report.n_rows,
            "problems": report.problems,
            "head_seq": report.last_seq,
            "head_hash": report.last_hash,
            "anchor_seq": report.anchor_seq,
            "counts": report.counts,
            "notes": report.notes,
        }
        print(json.dumps(out))
        return 0 if report.ok else 1
    counts = ", ".join(f"{n:,} {what}" for what, n in report.counts.items())
    if report.ok:
        print(
            f"OK: {report.n_rows:,} audit rows, chain and tables agree ({counts}); "
            f"head #{report.last_seq} {report.last_hash}"
        )
        if report.anchor_seq == 0:
            print("  the expected head is the empty chain's: it anchors nothing")
        elif report.anchor_seq is not None:
            print(f"  the expected head is row #{report.anchor_seq} of the chain")
    else:
        print(f"BROKEN: {len(report.problems)} problem(s) in {report.n_rows:,} rows:")
        for problem in report.problems:
            print(f"  - {problem}")
    for note in report.notes:
        print(f"  note: {note}")
    return 0 if report.ok else 1


def _configure(p: argparse.ArgumentParser) -> None:
    asub = p.add_subparsers(dest="audit_cmd", required=True, metavar="ACTION")
    v = sub_parser(
        asub,
        "verify",
        "verify the hash chain and cross-check orders, fills, equity and run summaries against "
        "it; exit 1 if anything was tampered with",
        ("ultrathink audit verify", "ultrathink audit verify --expect-head 1a32d9…"),
    )
    v.add_argument("--db", help=DB_HELP)
    v.add_argument(
        "--expect-head",
        metavar="HASH",
        help="the head hash you kept elsewhere: the chain must end there",
    )
    v.add_argument("--json", action="store_true", help="JSON output")


COMMAND = Command(
    name="audit",
    order=70,
    help="audit trail tools: verify",
    description="Every order, fill, risk decision, equity chunk and operator command is in a "
    "hash-chained, append-only log; `verify` recomputes it and checks the tables against it.",
    examples=("ultrathink audit verify",),
    configure=_configure,
    handler=_handle,
)
