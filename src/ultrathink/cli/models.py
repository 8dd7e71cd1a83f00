"""``ultrathink models``: the model registry — list, show, promote, rollback."""

from __future__ import annotations

import argparse

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
    leaves += [show, promote, rollback]
    for leaf in leaves:
        add_group_flags(leaf, "--registry", _REGISTRY_HELP)
    p.set_defaults(models_cmd="list", registry=None, json=False)


COMMAND = Command(
    name="models",
    order=50,
    help="the model registry: list, show, promote, rollback",
    description="Versioned, hash-verified models with their lineage; the ml strategy trades "
    "the production version unless --model names another.",
    examples=(
        "ultrathink models",
        "ultrathink models show v0001",
        "ultrathink models promote v0002",
    ),
    configure=_configure,
    handler=_handle,
)
