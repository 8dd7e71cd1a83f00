"""Localhost HTTP control API of a running paper session, and the thread that serves it.

Routes (every one needs ``Authorization: Bearer <token>``; the token is in the session file)::

    POST /v1/commands   a command object (see ``hardening/overrides.py``) -> its result
    GET  /v1/status     the ``status`` command, operator from the ``X-Operator`` header
    GET  /metrics       the session's Prometheus metrics (text format 0.0.4)

The routes only parse and forward: ``CommandChannel.execute`` runs the command on the
engine's kernel thread and answers with ``{"action", "ok", "before", "after", "message"}``.
Errors answer ``{"error": message}``: 400 malformed JSON (not UTF-8, NaN/Infinity or a number
out of range, a repeated key, nested deeper than ``MAX_JSON_DEPTH``), 401 missing or wrong
token, 409 refused now (``OverrideError`` from the session), 413 body over ``MAX_BODY_BYTES``
(refused by its Content-Length, or as soon as the stream passes the cap), 415 not
``Content-Type: application/json``, 422 invalid command, 504 no answer in time.
``ControlServer`` runs uvicorn in a daemon thread, bound to a loopback address only, and
writes the session file (mode 0600) that ``ultrathink ctl`` reads.

This module is the public entry point; the parts live beside it in ``web/``:

    control_app.py     the FastAPI app: token check, routes, ``CommandChannel``
    json_body.py       strict reading of the request body (size, type, UTF-8, JSON rules)
    api_error.py       ``ApiError`` and the ``{"error": message}`` answer it becomes
    control_server.py  ``ControlServer``: the uvicorn thread and the session file
"""

from __future__ import annotations

from ultrathink.web.control_app import COMMAND_TIMEOUT_S, CommandChannel, create_app
from ultrathink.web.control_app import METRICS_CONTENT_TYPE as METRICS_CONTENT_TYPE
from ultrathink.web.control_server import ControlServer
from ultrathink.web.json_body import MAX_BODY_BYTES as MAX_BODY_BYTES
from ultrathink.web.json_body import MAX_INT_DIGITS as MAX_INT_DIGITS
from ultrathink.web.json_body import MAX_JSON_DEPTH as MAX_JSON_DEPTH

__all__ = ["COMMAND_TIMEOUT_S", "CommandChannel", "ControlServer", "create_app"]
