"""``ultrathink ctl``: operator commands to a running paper session over its control API.

The client finds the session through its session file (``.ultrathink/control.json``, written
by ``ultrathink paper``) or ``--url`` + ``--token``, posts one command to ``/v1/commands``
and prints what changed. The session validates and executes; this module only builds the
command object, so it stays import-light (stdlib ``urllib``, no server stack).
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ultrathink.errors import UltrathinkError
from ultrathink.web import default_session_file

if TYPE_CHECKING:
    import urllib.error

#: Environment variable holding the token for ``--url`` (keeps it out of shell history).
TOKEN_ENV = "ULTRATHINK_CONTROL_TOKEN"
#: The session answers within its own 10 s command timeout; allow for the round trip.
CLIENT_TIMEOUT_S = 15.0
_OFF_VALUES = ("off", "none")


class ControlClientError(UltrathinkError):
    """The control command could not be delivered or was refused by the session."""


def add_ctl_parser(sub: Any) -> None:
    """Register ``ultrathink ctl ACTION ...`` on the main parser's subparsers.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The subparsers of the ``ultrathink`` parser.
    """
    p = sub.add_parser("ctl", help="control a running paper session: halt, resume, limits, ...")
    csub = p.add_subparsers(dest="ctl_cmd", required=True, metavar="ACTION")
    common = _common_options()

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        return csub.add_parser(name, parents=[common], help=help_text, description=help_text)

    action("status", "show the session's trading state, limits, breakers and positions")
    q = action("halt", "kill switch: HALTED, cancel working orders, flatten positions")
    q.add_argument("--no-flatten", action="store_true", help="keep positions open")
    action("resume", "back to ACTIVE from HALTED or REDUCING (needs --reason)")
    action("reduce", "REDUCING: only exposure-reducing orders pass until resume")
    q = action("flatten", "close one symbol's position, or all with --all")
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("symbol", nargs="?", metavar="SYMBOL", help="symbol to flatten")
    which.add_argument("--all", action="store_true", help="flatten every position")
    q = action("set-limit", "change one risk limit at runtime")
    q.add_argument("name", metavar="NAME", help="risk limit, e.g. max_drawdown_pct")
    q.add_argument("value", metavar="VALUE", help="new value, or off/none to switch it off")
    for name, verb in (("disable", "only reducing orders"), ("enable", "normal trading")):
        q = action(name, f"{name} trading in one symbol ({verb})")
        q.add_argument("symbol", metavar="SYMBOL")
    q = action("breaker", "force a circuit breaker open (fallback) or closed")
    q.add_argument("name", metavar="NAME", help="decision, market_data, execution or risk")
    q.add_argument("state", choices=("open", "closed"), help="open or closed")
    p.set_defaults(func=cmd_ctl)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("session and audit")
    g.add_argument("--operator", help="who acts, for the audit trail (default: $USER)")
    g.add_argument("--reason", default="", help="why, for the audit trail")
    g.add_argument(
        "--session",
        metavar="PATH",
        help="session file of the paper session (default .ultrathink/control.json)",
    )
    g.add_argument("--url", help="control API base URL instead of a session file")
    g.add_argument("--token", help=f"bearer token for --url (default ${TOKEN_ENV})")
    g.add_argument("--json", action="store_true", help="print the raw JSON result")
    return common


def cmd_ctl(args: argparse.Namespace) -> int:
    """Send one operator command to the running paper session; print the result.

    Returns
    -------
    int
        0 when the session applied the command, 2 when it could not be delivered or
        was refused (the reason is printed on stderr).
    """
    try:
        payload = build_command(args)
        url, token = resolve_endpoint(args)
        result = post_command(url, token, payload)
    except ControlClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


def _default_operator() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):  # no login name (containers without a passwd entry)
        return "unknown"


def _limit_value(text: str) -> float | str | None:
    if text.strip().lower() in _OFF_VALUES:
        return None
    try:
        value = float(text)
    except ValueError:
        return text  # the session names the field and the rule
    return value if math.isfinite(value) else text


def build_command(args: argparse.Namespace) -> dict[str, Any]:
    """The command object of the parsed ``ctl`` arguments (validated by the session)."""
    cmd = args.ctl_cmd
    payload: dict[str, Any] = {"operator": args.operator or _default_operator()}
    if args.reason:
        payload["reason"] = args.reason
    if cmd == "resume":
        payload["reason"] = args.reason  # required: an empty one is refused with the rule
    if cmd == "halt":
        payload.update(action="halt", flatten=not args.no_flatten)
    elif cmd == "flatten":
        payload.update(action="flatten", symbol=None if args.all else args.symbol)
    elif cmd == "set-limit":
        payload.update(action="set_limit", limit=args.name, value=_limit_value(args.value))
    elif cmd in ("disable", "enable"):
        payload.update(action=f"{cmd}_symbol", symbol=args.symbol)
    elif cmd == "breaker":
        payload.update(action="force_breaker", breaker=args.name, state=args.state)
    else:  # status, resume, reduce carry no more fields
        payload["action"] = cmd
    return payload


def resolve_endpoint(args: argparse.Namespace) -> tuple[str, str]:
    """Base URL and token: ``--url`` + ``--token``/env, else the session file."""
    if args.url:
        token = args.token or os.environ.get(TOKEN_ENV)
        if not token:
            raise ControlClientError(f"--url needs a token: pass --token or set ${TOKEN_ENV}")
        return str(args.url), token
    path = Path(args.session) if args.session else default_session_file()
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ControlClientError(
            f"no running paper session found at {path} (start one with `ultrathink paper`, "
            "or pass --url and --token)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ControlClientError(f"cannot read the session file {path}: {exc}") from None
    if not isinstance(content, dict) or not content.get("url") or not content.get("token"):
        raise ControlClientError(
            f"session file {path} has no url and token: it is not a control session file"
        )
    return str(content["url"]), str(args.token or content["token"])


def post_command(url: str, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST one command to ``{url}/v1/commands``; the result, or ControlClientError."""
    import urllib.error  # lazy: 16 ms of imports every `ultrathink` start would pay
    import urllib.request

    request = urllib.request.Request(
        url.rstrip("/") + "/v1/commands",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    # no proxies: an http_proxy setting must never receive the bearer token
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=CLIENT_TIMEOUT_S) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        try:
            raise ControlClientError(_server_error(exc)) from None
        finally:
            exc.close()  # an HTTPError holds the response open
    except urllib.error.URLError as exc:
        raise ControlClientError(_unreachable(url, exc.reason)) from None
    except TimeoutError:
        raise ControlClientError(
            f"the paper session at {url} did not answer within {CLIENT_TIMEOUT_S:g} s"
        ) from None
    except OSError as exc:  # connection reset mid-answer and the like
        raise ControlClientError(_unreachable(url, exc)) from None
    try:
        result: dict[str, Any] = json.loads(body)
    except ValueError:
        raise ControlClientError(f"the server at {url} did not answer with JSON") from None
    return result


def _server_error(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read()).get("error")
    except (OSError, ValueError, AttributeError):
        message = None
    return f"{message or exc.reason} (HTTP {exc.code})"


def _unreachable(url: str, reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return (
            f"no paper session is listening at {url} (connection refused): it has ended, "
            "or the session file is stale"
        )
    if isinstance(reason, TimeoutError):
        return f"the paper session at {url} did not answer within {CLIENT_TIMEOUT_S:g} s"
    return f"cannot reach the paper session at {url}: {reason}"


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix or "value": values} if values is not None else {}
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(_flat(value, name) if isinstance(value, dict) else {name: value})
    return out


def format_result(result: dict[str, Any]) -> str:
    """One line: the action, then ``field before → after`` for each changed field."""
    action = result.get("action", "?")
    before, after = _flat(result.get("before")), _flat(result.get("after"))
    if action == "status":
        fields = "".join(f"\n  {k}: {v}" for k, v in (after or before).items())
        line = f"status:{fields or ' no fields'}"
    else:
        keys = list(dict.fromkeys([*before, *after]))
        changed = [
            f"{k} {before.get(k)} → {after.get(k)}" for k in keys if before.get(k) != after.get(k)
        ]
        line = f"{action}: {', '.join(changed) or 'no change'}"
    message = result.get("message")
    return f"{line} ({message})" if message else line
