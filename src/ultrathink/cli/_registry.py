"""How a command module declares itself to ``ultrathink``.

Each public module of ``ultrathink.cli`` defines ``COMMAND = Command(...)``: its name, where
it sorts in ``--help``, a one-line help, a description, an example, the function that adds
its arguments and the handler that runs it. ``ultrathink.cli`` discovers the modules of the
package and registers every ``COMMAND``; adding a command is adding a module.

Modules stay import-light: they import what a command needs inside its handler, because
every ``ultrathink`` start builds the whole parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ultrathink.engine.spec import ProfilerFactory


@dataclass(frozen=True)
class CliContext:
    """What a command may get besides its arguments (set by ``ultrathink profile``)."""

    profiler: ProfilerFactory | None = None


Handler = Callable[[argparse.Namespace, CliContext], int]


@dataclass(frozen=True)
class Command:
    """One ``ultrathink`` command.

    Attributes
    ----------
    name : str
        The command word.
    order : int
        Position in ``ultrathink --help``.
    help : str
        One line for the command list.
    description : str
        The paragraph at the top of its ``--help``.
    examples : tuple of str
        Shown under "examples:" in its ``--help``.
    configure : callable
        Adds the command's arguments (and sub-commands) to its parser.
    handler : callable or None
        Runs it: ``handler(args, context) -> exit code``; None when sub-commands set one.
    epilog : callable or None
        Extra help text computed when ``--help`` is printed (e.g. strategy parameters).
    """

    name: str
    order: int
    help: str
    description: str
    examples: tuple[str, ...]
    configure: Callable[[argparse.ArgumentParser], None]
    handler: Handler | None = None
    epilog: Callable[[], str] | None = field(default=None)


class HelpParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help may be completed when it is printed.

    ``epilog_fn`` adds text under the options; ``before_help`` callbacks may fill option
    help texts (e.g. defaults that need the configuration models): building the parser for
    a run never pays for what only ``--help`` shows.
    """

    def __init__(self, *args: Any, epilog_fn: Callable[[], str] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self._epilog_fn = epilog_fn
        self.before_help: list[Callable[[argparse.ArgumentParser], None]] = []

    def format_help(self) -> str:
        for fill in self.before_help:
            fill(self)
        self.before_help = []
        if self._epilog_fn is not None:
            extra = self._epilog_fn()
            self.epilog = f"{self.epilog}\n\n{extra}" if self.epilog else extra
            self._epilog_fn = None
        return super().format_help()


def examples_text(examples: tuple[str, ...]) -> str:
    """The "examples:" block of a help text."""
    return "examples:\n" + "\n".join(f"  {line}" for line in examples)


def sub_parser(
    sub: Any, name: str, help_text: str, examples: tuple[str, ...], **kw: Any
) -> argparse.ArgumentParser:
    """Add a sub-command parser with a description, examples and raw formatting."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=kw.pop("description", help_text),
        epilog=examples_text(examples) if examples else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )
    return parser
