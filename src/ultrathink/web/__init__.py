"""Operator surfaces of a running session: the localhost control API (``control_api``).

This package module stays import-light (no FastAPI/uvicorn) so the ``ultrathink ctl``
client can find the session file without loading the server stack.
"""

from __future__ import annotations

import os
from pathlib import Path

#: File name of the session file a running paper session writes next to its store.
SESSION_FILE_NAME = "control.json"

__all__ = ["SESSION_FILE_NAME", "default_session_file"]


def default_session_file() -> Path:
    """Where a paper session writes its control session file (url, token, pid).

    Returns
    -------
    Path
        ``$ULTRATHINK_HOME/control.json`` when ``ULTRATHINK_HOME`` is set, else
        ``./.ultrathink/control.json`` (the same directory as the default store).
    """
    home = os.environ.get("ULTRATHINK_HOME")
    return (Path(home) if home else Path(".ultrathink")) / SESSION_FILE_NAME
