"""The control API's FastAPI app: bearer-token check, three routes, the command channel.

The routes only parse and forward (see ``control_api`` for the routes and their answers):
the body is read by ``json_body``, the command by ``hardening.overrides.parse_command``, and
``CommandChannel.execute`` runs it on the engine's kernel thread, off the event loop.

``GET /v1/status`` is the route a watching dashboard calls four times a second, from inside
the session it watches, so it does as little as possible: when the channel has
``status_json`` (the engine's ``SessionControl`` has), the answer is the bytes of the latest
snapshot, encoded once per snapshot, sent from the event loop without a thread-pool hop,
without a command object and without re-encoding; ``?since=SEQ`` answers 204 No Content when
the latest snapshot is still ``SEQ``. (Measured in the session before this: 2.1 ms of
``asdict`` + ``jsonable_encoder`` per poll, holding the GIL the kernel thread needs.)
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from starlette.concurrency import run_in_threadpool

from ultrathink.errors import ConfigError
from ultrathink.hardening.overrides import Command, OverrideError, Status, parse_command
from ultrathink.web.api_error import ApiError, api_error_response
from ultrathink.web.command_ids import Answer, CommandLedger, pop_command_id, wait_answer
from ultrathink.web.json_body import read_json

__all__ = ["COMMAND_TIMEOUT_S", "METRICS_CONTENT_TYPE", "CommandChannel", "create_app"]

#: How long a route waits for the kernel thread to run a command.
COMMAND_TIMEOUT_S = 10.0
#: ``generate_latest`` writes text format 0.0.4; prometheus-client 0.26 moved
#: ``CONTENT_TYPE_LATEST`` to ``version=1.0.0``, which is not what the bytes are.
METRICS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_TOKEN_HELP = (
    "send 'Authorization: Bearer <token>' with the token from the session file of the "
    "running paper session (.ultrathink/control.json by default, readable by its owner only); "
    "`ultrathink ctl` reads it for you"
)
# the logger keeps the name it had before the app moved out of ``control_api``
_log = logging.getLogger("ultrathink.web.control_api")


class CommandChannel(Protocol):
    """What the control API needs from a running session (implemented by the engine)."""

    def execute(self, command: Command, timeout_s: float) -> dict[str, Any]:
        """Run the command on the kernel thread; return a JSON-able result
        {"action", "ok": True, "before": {...}, "after": {...}, "message": str}.
        Raises OverrideError when the command cannot apply now (e.g. unknown symbol),
        TimeoutError when the session did not answer in time."""
        ...

    def metrics_text(self) -> bytes:
        """Prometheus text exposition of the session's metrics."""
        ...


def _require_token(token: str) -> Callable[[Request], Any]:
    expected = token.encode()

    async def check(request: Request) -> None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(401, f"missing bearer token: {_TOKEN_HELP}")
        # bytes: compare_digest refuses non-ASCII str, and header values may hold any latin-1
        if not secrets.compare_digest(presented.strip().encode(), expected):
            raise ApiError(401, f"wrong bearer token: {_TOKEN_HELP}")

    return check


def _since(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError(422, f"since must be a snapshot seq (a non-negative integer), was {raw!r}")
    return int(raw)


def _parse(payload: Any) -> Command:
    try:
        return parse_command(payload)
    except OverrideError as exc:
        raise ApiError(422, str(exc)) from None


def _answer(channel: CommandChannel, command: Command, timeout_s: float) -> Answer:
    # blocks until the kernel thread answers (run it off the event loop); every outcome
    # becomes an answer, so that the command ledger can give it to a repeat
    try:
        result = channel.execute(command, timeout_s=timeout_s)
    except OverrideError as exc:
        return Answer(409, {"error": str(exc)})
    except TimeoutError as exc:
        detail = f" ({exc})" if str(exc) else ""
        return Answer(504, {"error": (
            f"the session did not answer the {command.action} command within "
            f"{timeout_s:g} s{detail}; it may be busy or stuck: check its log, then retry"
        )})  # fmt: skip
    except Exception as exc:
        _log.exception("control command %s failed in the session", command.action)
        return Answer(500, {"error": f"the session failed to run the {command.action} command: "
                                     f"{exc!r}"})  # fmt: skip
    return Answer(200, jsonable_encoder(result))


def _run_once(
    channel: CommandChannel, command: Command, timeout_s: float, ledger: CommandLedger,
    command_id: str,
) -> Answer:  # fmt: skip
    # the first request of an id: settled here, on the worker thread, so that the answer
    # reaches the ledger even when the client is gone before it is sent
    answer = Answer(500, {"error": f"the {command.action} command failed in the control API"})
    try:
        answer = _answer(channel, command, timeout_s)
    finally:
        # 504: cancelled before it started (``SessionControl.execute``): a retry may run it
        ledger.settle(command_id, answer, forget=answer.status == 504)
    return answer


def _response(answer: Answer) -> Response:
    if answer.status >= 400:
        raise ApiError(answer.status, str(answer.body.get("error")))
    return JSONResponse(answer.body, status_code=answer.status)


async def _execute(
    channel: CommandChannel, command: Command, timeout_s: float,
    ledger: CommandLedger | None = None, command_id: str | None = None,
) -> Response:  # fmt: skip
    # the channel blocks until the kernel thread answers: keep it off the event loop
    if ledger is None or command_id is None or isinstance(command, Status):
        return _response(await run_in_threadpool(_answer, channel, command, timeout_s))
    future, first = ledger.claim(command_id, command.model_dump())
    if first:
        answer = await run_in_threadpool(_run_once, channel, command, timeout_s, ledger, command_id)
    else:  # a repeat: the first request's answer, never a second run
        answer = await run_in_threadpool(wait_answer, future, timeout_s, command.action)
    return _response(answer)


def create_app(
    channel: CommandChannel, token: str, *, command_timeout_s: float = COMMAND_TIMEOUT_S
) -> FastAPI:
    """Build the control API over a session's command channel.

    Parameters
    ----------
    channel : CommandChannel
        Runs commands on the session's kernel thread and exposes its metrics.
    token : str
        Bearer token every request must present (compared in constant time).
    command_timeout_s : float
        How long a request waits for the kernel thread (``timeout_s`` of ``execute``).

    Returns
    -------
    FastAPI
        The ASGI app; serve it on a loopback address only (see ``ControlServer``).
    """
    if not token:
        raise ConfigError("control API token must be a non-empty string, was ''")
    app = FastAPI(
        title="ultrathink control",
        docs_url=None,  # every route is authenticated; no unauthenticated schema pages
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(_require_token(token))],
    )
    app.add_exception_handler(ApiError, api_error_response)
    ledger = CommandLedger()  # exactly-once: see ``command_ids``

    @app.post("/v1/commands")
    async def post_command(request: Request) -> Response:
        payload = await read_json(request)
        command_id = pop_command_id(payload)  # transport, not command: never an input
        command = _parse(payload)
        return await _execute(channel, command, command_timeout_s, ledger, command_id)

    # optional: ``status_json(since) -> bytes | None`` (``SessionControl`` has it; a channel
    # without it is asked the status command like any other)
    status_json: Callable[[int | None], bytes | None] | None = getattr(channel, "status_json", None)

    @app.get("/v1/status")
    async def get_status(request: Request) -> Response:
        if status_json is not None:  # the cheap path: see the module docstring
            body = status_json(_since(request.query_params.get("since")))
            if body is None:
                return Response(status_code=204)
            return Response(content=body, media_type="application/json")
        operator = request.headers.get("x-operator", "anonymous")
        command = _parse({"action": "status", "operator": operator})
        return await _execute(channel, command, command_timeout_s)

    @app.get("/metrics")
    async def get_metrics() -> Response:
        body = await run_in_threadpool(channel.metrics_text)
        return Response(content=body, media_type=METRICS_CONTENT_TYPE)

    return app
