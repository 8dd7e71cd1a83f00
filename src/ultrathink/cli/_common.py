"""Small helpers the command modules share."""

from __future__ import annotations

import argparse

DB_HELP = "SQLite store (default .ultrathink/ultrathink.db, or $ULTRATHINK_DB)"


def add_group_flags(p: argparse.ArgumentParser, path_flag: str, path_help: str) -> None:
    """Add ``path_flag`` and ``--json`` so they work on a command group or on its action.

    ``models --json show v1`` and ``models show v1 --json`` (likewise ``runs``) both work:
    SUPPRESS keeps an action's parser from overwriting what the group already parsed.
    """
    p.add_argument(path_flag, default=argparse.SUPPRESS, help=path_help)
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
