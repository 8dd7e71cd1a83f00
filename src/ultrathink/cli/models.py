"""``ultrathink models``: the model registry — list, show, promote, rollback, compress."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ultrathink.cli._common import add_group_flags
from ultrathink.cli._registry import CliContext, Command, sub_parser

_REGISTRY_HELP = "model registry directory (default .ultrathink/models)"


def _handle(args: argparse.Namespace, context: CliContext) -> int:
    from ultrathink import services
    from ultrathink.cli._output import print_model, print_models

    reg = services.model_registry(services.registry_root(args.registry))
    if args.models_cmd == "show":
        print_model(reg.verify(args.version), as_json=args.json)  # every file's hash checked
    elif args.models_cmd == "promote":
        reg.promote(args.version)
        print(f"promoted {args.version}; production is now {reg.production()}")
    elif args.models_cmd == "rollback":
        print(f"rolled back; production is now {reg.rollback()}")
    elif args.models_cmd == "compress":
        _compress(args, reg)
    else:
        print_models(reg.list(), reg.production(), as_json=args.json)
    return 0


def _configure(p: argparse.ArgumentParser) -> None:
    add_group_flags(p, "--registry", _REGISTRY_HELP)
    msub = p.add_subparsers(dest="models_cmd", metavar="ACTION")
    leaves = [sub_parser(msub, "list", "every version (default)", ("ultrathink models list",))]
    show = sub_parser(
        msub,
        "show",
        "one version's metadata and metrics (hashes verified)",
        ("ultrathink models show v0001",),
    )
    show.add_argument("version")
    promote = sub_parser(
        msub, "promote", "make a version the production model", ("ultrathink models promote v0002",)
    )
    promote.add_argument("version")
    rollback = sub_parser(
        msub, "rollback", "back to the previous production version", ("ultrathink models rollback",)
    )
    leaves += [show, promote, rollback, _configure_compress(msub)]
    for leaf in leaves:
        add_group_flags(leaf, "--registry", _REGISTRY_HELP)
    p.set_defaults(models_cmd="list", registry=None, json=False)


def _configure_compress(msub: Any) -> argparse.ArgumentParser:
    c = sub_parser(
        msub,
        "compress",
        "shrink an ensemble within an AUC budget; register it as a new version",
        (
            "ultrathink models compress v0001",
            "ultrathink models compress v0003 --max-auc-loss-pct 0.25 --json",
        ),
        description="Shrink a registered ensemble: fewer trees (best iteration on "
        "validation), fewer leaves and shallower trees, members dropped, the forest distilled "
        "into a small LightGBM; float32 thresholds of the compiled form are measured. Each "
        "lever is fitted and scored on the version's own purged walk-forward folds and kept "
        "only while the out-of-sample AUC stays within the budget of the parent's. The "
        "result is fitted on all rows and registered with its lineage; it is not promoted. "
        "The report gives bytes, AUC, log loss and compiled latency before and after.",
    )
    c.add_argument("version", help="the version to compress, e.g. v0001")
    c.add_argument(
        "--max-auc-loss-pct",
        type=float,
        default=0.5,
        metavar="PCT",
        help="largest relative loss of out-of-sample AUC allowed (default 0.5)",
    )
    g = c.add_argument_group("data (only when the version did not record its own)")
    g.add_argument("--data", help="sp500 | nasdaq | PATH | synthetic:... as it was trained")
    g.add_argument("--symbol", help="symbol it was trained on")
    g.add_argument("--start", help="first date of its training data")
    g.add_argument("--end", help="last date of its training data (inclusive)")
    return c


def _compress(args: argparse.Namespace, registry: Any) -> None:
    from ultrathink import services
    from ultrathink.models.compress import compress, register

    training = services.version_training_set(
        registry.root, args.version, args.data, args.start, args.end, args.symbol
    )
    result = compress(training, max_auc_loss_pct=args.max_auc_loss_pct)
    version = register(result, training, registry)
    out = {**result.to_dict(), "version": version}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    _print_compression(out)


def _print_compression(out: dict[str, Any]) -> None:
    from rich.table import Table

    from ultrathink.cli._output import _console

    table = Table(title=f"compress {out['parent']} → {out['version']} (out-of-sample figures)")
    heads = ("lever", "status", "bytes", "size", "AUC", "log loss", "p50 µs", "p99 µs",
             "batch rows/s", "what")  # fmt: skip
    for head in heads:
        table.add_column(head, justify="left" if head in ("lever", "status", "what") else "right")
    before = out["rows"][0]["bytes"]
    for row in out["rows"]:
        size = f"{100.0 * (row['bytes'] / before - 1.0):+.1f} %" if row["bytes"] else ""
        table.add_row(
            row["lever"], row["status"], _num(row["bytes"], ",d"), size,
            _num(row["auc"], ".4f"), _num(row["log_loss"], ".4f"), _num(row["p50_us"], ".2f"),
            _num(row["p99_us"], ".2f"), _num(row["rows_per_s"], ",.0f"), row["change"],
        )  # fmt: skip
    _console().print(table)
    for line in _budget_lines(out):
        print(line)


def _budget_lines(out: dict[str, Any]) -> list[str]:
    b = out["budget"]

    def met(ok: bool | None) -> str:
        return "met" if ok else "NOT met"

    loss = b["auc_loss_pct"]
    change = f"loss {loss:.2f} %" if loss > 0 else f"no loss (gain {-loss:.2f} %)"
    lines = [
        f"size: {b['bytes_before']:,} → {b['bytes_after']:,} bytes, {b['smaller_pct']:.1f} % "
        f"smaller (budget >= 50 %: {met(b['size_ok'])})",
        f"AUC: {b['auc_before']:.4f} → {b['auc_after']:.4f}, {change} (budget: a loss <= "
        f"{out['max_auc_loss_pct']:g} %: {met(b['auc_ok'])})",
    ]
    if "p50_ratio" in b:
        lines.append(
            f"compiled: p50 {b['p50_us_before']:.2f} → {b['p50_us_after']:.2f} µs (x"
            f"{b['p50_ratio']:.2f}), batch x{b['rows_per_s_ratio']:.2f} rows/s (no slower: "
            f"{met(b['latency_ok'])}; one process, noisy machines vary)"
        )
    recorded = out.get("recorded_auc")
    if recorded is not None and abs(recorded - b["auc_before"]) > 1e-9:
        lines.append(
            f"note: refitted per fold, the parent scores AUC {b['auc_before']:.4f}, not the "
            f"{recorded:.4f} it recorded (other library versions?); the budget uses the refit"
        )
    if b["auc_before"] <= 0.5:
        lines.append(
            f"note: the parent's out-of-sample AUC {b['auc_before']:.4f} is at or below 0.5 — "
            "no skill on these rows, so the budget compares noise"
        )
    applied = [k for k, v in out["levers"].items() if v.get("applied")]
    lines.append(
        f"registered {out['version']} (parent {out['parent']}, not promoted); levers applied: "
        f"{', '.join(applied)}"
    )
    return lines


def _num(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


COMMAND = Command(
    name="models",
    order=50,
    help="the model registry: list, show, promote, rollback, compress",
    description="Versioned, hash-verified models with their lineage; the ml strategy trades "
    "the production version unless --model names another.",
    examples=(
        "ultrathink models",
        "ultrathink models show v0001",
        "ultrathink models promote v0002",
        "ultrathink models compress v0001",
    ),
    configure=_configure,
    handler=_handle,
)
