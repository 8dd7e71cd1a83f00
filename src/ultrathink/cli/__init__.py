"""``ultrathink``: the command line. One module per command, each declaring ``COMMAND``.

Every command prints a clear one-line ``error: …`` (exit code 2) for bad input instead of a
traceback; ``audit verify`` exits 1 when the trail is broken, ``bench --compare`` on a
regression.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from ultrathink import __version__
from ultrathink.cli._registry import CliContext, Command, HelpParser, examples_text
from ultrathink.errors import UltrathinkError

__all__ = ["CliContext", "build_parser", "commands", "main"]


def commands() -> list[Command]:
    """Every command module's ``COMMAND``, in help order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        command = getattr(module, "COMMAND", None)
        if isinstance(command, Command):
            found.append(command)
    return sorted(found, key=lambda c: (c.order, c.name))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="ultrathink",
        description="ULTRATHINK: event-driven ML trading platform — backtest, paper-trade, "
        "train, benchmark and steer a running session.",
        epilog=examples_text(
            (
                "ultrathink backtest",
                "ultrathink paper --speed max",
                "ultrathink run",
                "ultrathink COMMAND --help",
            )
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ultrathink {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=HelpParser
    )
    for command in commands():
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog=examples_text(command.examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog_fn=command.epilog,
        )
        command.configure(p)
        if command.handler is not None:
            p.set_defaults(func=command.handler)
    return parser


def main(argv: Sequence[str] | None = None, context: CliContext | None = None) -> int:
    """Entry point of the ``ultrathink`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args, context or CliContext())
    except UltrathinkError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        del exc
        # the traceback's frames may hold a pyarrow reader in a reference cycle; free it now,
        # while Arrow is alive: freed during interpreter teardown, its I/O thread can abort
        # the process ("terminate called without an active exception", exit -6; seen once
        # under load, apache/arrow#34314)
        gc.collect()
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        # outside the strategy (a flush, the recorder...): the strategy's own is a
        # StrategyError above. Nothing more is allocated here: the message is a constant.
        print(_OUT_OF_MEMORY, file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return code


_OUT_OF_MEMORY = (
    "error: out of memory: the process could not allocate; a paper session can be resumed "
    "with `ultrathink paper --resume RUN_ID` once memory is available (see docs/operations.md)"
)


def _one_line(message: str, limit: int = 2000) -> str:
    # one line, of a readable length, whatever the message quoted
    text = " ".join(message.split())
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more chars)"
