"""An error answer of the web routes: ``ApiError(status, message)`` and how it is sent.

A route (or what it calls, e.g. ``json_body``) raises ``ApiError``; ``api_error_response``,
registered as the app's exception handler, answers ``{"error": message}`` with that status,
ASCII-escaped so that a message quoting odd input can always be encoded, and with
``WWW-Authenticate: Bearer`` on a 401.
"""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.responses import Response

__all__ = ["ApiError", "api_error_response"]


class ApiError(Exception):
    """An error answer: HTTP status and a message that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def api_error_response(_request: Request, exc: Exception) -> Response:
    """The exception handler of ``ApiError``: ``{"error": message}`` with its status."""
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    # ASCII-escaped: a message that quotes odd input can always be encoded
    body = json.dumps({"error": exc.message}, ensure_ascii=True).encode()
    return Response(body, status_code=exc.status, headers=headers, media_type="application/json")
