"""``ultrathink ctl``: operator commands to running paper sessions over their control API.

Every live paper session of a store has a control file in its session directory
(``<store>.sessions/run-<id>/control.json``, mode 0600, written once its endpoint listens).
``ctl sessions`` lists the live ones; ``--run ID`` addresses one; without it ``ctl`` acts only
when exactly one session is live; ``halt --all`` halts every live session of the store.

The bearer token is only ever sent to a loopback address (127.0.0.0/8, ::1) named in a file
``ctl`` trusts: a regular file (not a link) owned by the current user and readable by nobody
else, or ``--url`` given on the command line (loopback only too). The session validates and
executes; this module only builds the command object, so it stays import-light (stdlib
``urllib``, no server stack).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

from ultrathink.cli._common import DB_HELP
from ultrathink.cli._registry import CliContext, Command, sub_parser
from ultrathink.cli._status import format_snapshot, is_snapshot
from ultrathink.web.control_client import (
    ControlClientError,
    default_operator,
    live_targets,
    loopback_url,
    post_command,
    read_trusted,
)

#: Environment variable holding the token for ``--url`` (keeps it out of shell history).
TOKEN_ENV = "ULTRATHINK_CONTROL_TOKEN"
_OFF_VALUES = ("off", "none")


class Target(NamedTuple):
    """One session to send a command to."""

    label: str
    url: str
    token: str


def _configure(p: argparse.ArgumentParser) -> None:
    csub = p.add_subparsers(dest="ctl_cmd", required=True, metavar="ACTION")
    common = _common_options()

    def action(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        return sub_parser(csub, name, help_text, (example,), parents=[common])

    action("sessions", "list the live paper sessions of the store", "ultrathink ctl sessions")
    action(
        "status",
        "show a session's trading state, limits, breakers and positions",
        "ultrathink ctl status --run 3",
    )
    q = action(
        "halt",
        "kill switch: HALTED, cancel working orders, flatten positions",
        'ultrathink ctl halt --all --reason "exchange outage"',
    )
    q.add_argument("--no-flatten", action="store_true", help="keep positions open")
    q.add_argument("--all", action="store_true", help="halt every live session of the store")
    q = action(
        "resume",
        "back to ACTIVE from HALTED or REDUCING (--reason is required)",
        'ultrathink ctl resume --reason "feed back"',
    )
    q.set_defaults(reason_required=True)
    action(
        "reduce",
        "REDUCING: only exposure-reducing orders pass until resume",
        'ultrathink ctl reduce --reason "volatility"',
    )
    q = action(
        "flatten", "close one symbol's position, or all with --all", "ultrathink ctl flatten SP500"
    )
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("symbol", nargs="?", metavar="SYMBOL", help="symbol to flatten")
    which.add_argument("--all", action="store_true", help="flatten every position")
    q = action(
        "set-limit",
        "change one risk limit at runtime",
        "ultrathink ctl set-limit max_drawdown_pct 20",
    )
    q.add_argument("name", metavar="NAME", help="risk limit, e.g. max_drawdown_pct")
    q.add_argument("value", metavar="VALUE", help="new value, or off/none to switch it off")
    for name, verb in (("disable", "only reducing orders"), ("enable", "normal trading")):
        q = action(name, f"{name} trading in one symbol ({verb})", f"ultrathink ctl {name} AAA")
        q.add_argument("symbol", metavar="SYMBOL")
    q = action(
        "breaker",
        "force a circuit breaker open (fallback) or closed",
        "ultrathink ctl breaker execution open",
    )
    q.add_argument("name", metavar="NAME", help="decision, market_data, execution or risk")
    q.add_argument("state", choices=("open", "closed"), help="open or closed")


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("which session, and the audit trail")
    g.add_argument("--db", help=DB_HELP)
    g.add_argument("--run", type=int, metavar="ID", help="the session's run id (see `sessions`)")
    g.add_argument("--operator", help="who acts, for the audit trail (default: $USER)")
    g.add_argument("--reason", default="", help="why, for the audit trail")
    g.add_argument("--session", metavar="PATH", help="a session's control file, instead")
    g.add_argument("--url", help="control API base URL (loopback only), instead")
    g.add_argument("--token", help=f"bearer token for --url (default ${TOKEN_ENV})")
    g.add_argument("--json", action="store_true", help="print the raw JSON result")
    g.add_argument(
        "--id",
        metavar="ID",
        help="the command's id (default: a new one); the session applies an id once, so "
        "sending a command whose answer was lost again with its id cannot apply it twice",
    )
    return common


def cmd_ctl(args: argparse.Namespace, context: CliContext) -> int:
    """Send one operator command to the addressed session(s); print the result.

    Returns
    -------
    int
        0 when every addressed session applied the command, 2 when one could not be
        reached or refused it (the reason is printed on stderr).
    """
    try:
        if args.ctl_cmd == "sessions":
            return _print_sessions(args)
        if getattr(args, "reason_required", False) and not args.reason.strip():
            raise ControlClientError("resume needs --reason (it goes to the audit trail)")
        payload = build_command(args)
        targets = resolve_targets(args)
    except ControlClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code = 0
    for target in targets:
        prefix = f"{target.label}: " if len(targets) > 1 else ""
        try:
            result = post_command(target.url, target.token, payload, command_id=args.id)
        except ControlClientError as exc:
            print(f"error: {prefix}{exc}", file=sys.stderr)
            code = 2
            continue
        print(json.dumps(result, indent=2) if args.json else prefix + format_result(result))
    return code


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
    payload: dict[str, Any] = {"operator": args.operator or default_operator()}
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


def resolve_targets(args: argparse.Namespace) -> list[Target]:
    """The session(s) a command goes to: ``--url``, ``--session``, ``--run``, ``--all``, or the
    one live session of the store."""
    if args.url:
        token = args.token or os.environ.get(TOKEN_ENV)
        if not token:
            raise ControlClientError(f"--url needs a token: pass --token or set ${TOKEN_ENV}")
        return [Target(args.url, loopback_url(str(args.url), "--url"), token)]
    if args.session:
        content = read_trusted(Path(args.session))
        return [_target(Path(args.session).parent.name, content, args.token)]
    live = _live(args)
    if getattr(args, "all", False) and args.ctl_cmd == "halt":
        if not live:
            raise ControlClientError(f"no live paper session in {_db(args)}")
        return [_target(label, content, args.token) for label, content in live]
    if args.run is not None:
        wanted = f"run {args.run}"
        found = [(label, c) for label, c in live if label == wanted]
        if not found:
            raise ControlClientError(
                f"run {args.run} has no live session in {_db(args)}; live: {_labels(live)}"
            )
        return [_target(*found[0], args.token)]
    if len(live) != 1:
        if not live:
            raise ControlClientError(
                f"no live paper session in {_db(args)} (start one with `ultrathink paper`, "
                "or pass --db, --session or --url)"
            )
        raise ControlClientError(
            f"{len(live)} live sessions ({_labels(live)}): pick one with --run ID"
        )
    return [_target(*live[0], args.token)]


def _target(label: str, content: dict[str, Any], token: str | None) -> Target:
    url = loopback_url(str(content["url"]), label)
    return Target(label, url, str(token or content["token"]))


def _live(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    return live_targets(_db(args))


def _db(args: argparse.Namespace) -> Path:
    from ultrathink.config import default_db_path

    return Path(args.db) if args.db else default_db_path()


def _labels(live: list[tuple[str, dict[str, Any]]]) -> str:
    return ", ".join(label for label, _ in live) or "none"


def _print_sessions(args: argparse.Namespace) -> int:
    live = _live(args)
    if args.json:
        rows = [
            {"session": label, **{k: v for k, v in c.items() if k != "token"}} for label, c in live
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not live:
        print(f"no live paper session in {_db(args)}")
        return 0
    for label, content in live:
        print(f"{label}: pid {content.get('pid')}, {content.get('strategy')}, {content.get('url')}")
    return 0


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix or "value": values} if values is not None else {}
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(_flat(value, name) if isinstance(value, dict) else {name: value})
    return out


def _shown(value: Any) -> str:
    """A field's value for a before/after line; an empty text shows as ``""``, not as nothing."""
    return '""' if value == "" else str(value)


def format_result(result: dict[str, Any]) -> str:
    """One line: the action, then ``field before → after`` for each changed field."""
    action = result.get("action", "?")
    if action == "status" and is_snapshot(result.get("after")):
        return format_snapshot(result["after"])
    before, after = _flat(result.get("before")), _flat(result.get("after"))
    if action == "status":
        fields = "".join(f"\n  {k}: {v}" for k, v in (after or before).items())
        line = f"status:{fields or ' no fields'}"
    else:
        keys = list(dict.fromkeys([*before, *after]))
        changed = [
            f"{k} {_shown(before.get(k))} → {_shown(after.get(k))}"
            for k in keys
            if before.get(k) != after.get(k)
        ]
        line = f"{action}: {', '.join(changed) or 'no change'}"
    message = result.get("message")
    line = f"{line} ({message})" if message else line
    # the session had applied this id already: this is its first answer, not a second run
    return f"{line} [already applied: the first answer]" if result.get("repeat") else line


COMMAND = Command(
    name="ctl",
    order=25,
    help="steer running paper sessions: halt, resume, limits, symbols, breakers",
    description="Send an operator command to a live paper session of the store over its "
    "loopback control endpoint. Every command is validated by the session, applied between "
    "two bars and audited with who, when, why, before and after.",
    examples=(
        "ultrathink ctl sessions",
        "ultrathink ctl status --run 3",
        'ultrathink ctl halt --all --reason "exchange outage"',
        "ultrathink ctl set-limit max_drawdown_pct 20 --reason tighter",
    ),
    configure=_configure,
    handler=cmd_ctl,
)
