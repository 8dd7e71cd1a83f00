"""The network scenario's control hop: operator commands through the fault proxy, exactly once.

A paced paper session (``sma_cross`` on synthetic daily bars, ``bars_per_s`` a wall second,
long enough to outlast the commands) serves its control API; this process sends it a seeded
sequence of ``control_commands`` operator commands (``set_limit`` values, ``disable`` /
``enable`` pairs, ``halt`` / ``resume`` pairs, ``flatten``) with ``control_client.send_command``
**through the proxy** (chunk mode, both directions: latency with jitter, stalls longer than the
client's timeout, resets). The client retries a failed attempt with the same command id; the
control server answers a repeated id with the first answer. ``duplicate`` is a rate of
*messages* here (the proxy cannot repeat a part of an HTTP stream): that share of the commands
is sent a second time, with the same id, after its answer came back.

Each command's reason carries its id, so after the session stopped every command is matched
with its audit rows (``operator.<action>``, or ``operator.refused``): a command the client saw
applied (or refused) must have exactly one row, a command the client gave up on
(``unconfirmed``) at most one (the audit says whether it was applied), and no command two.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ultrathink.engine.sessions import CONTROL_FILE_NAME, session_dir
from ultrathink.persistence import Store
from ultrathink.stress.base import RunContext
from ultrathink.stress.chaos import DETERMINISTIC, ultrathink_command
from ultrathink.stress.invariants import check_process, check_run
from ultrathink.stress.outcome import Case, Invariant
from ultrathink.stress.proxy import FAULT_KINDS, FaultProxy, Faults
from ultrathink.web.control_client import (
    CommandUnconfirmed,
    ControlClientError,
    read_trusted,
    send_command,
)

__all__ = ["command_sequence", "control_case"]

_READY_S = 180.0
_SYMBOL = "SYN"  # the synthetic data's one symbol


class ControlParams(Protocol):
    """The network scenario's parameters this case reads."""

    control_commands: int
    control_bars_per_s: float
    control_timeout_s: float
    control_attempts: int


class ControlFaults(Protocol):
    """A network case's fault rates (``NetworkCase``)."""

    name: str
    latency: float
    latency_ms: float
    jitter_ms: float
    stall: float
    stall_s: float
    reset: float
    duplicate: float


def command_sequence(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` operator commands, seeded: limits, symbol switches and halt/resume in pairs."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        kind = rnd.choice(("limit", "symbol", "halt", "flatten"))
        if kind == "limit":
            value = float(rnd.choice((50, 100, 200, 500, 1000)))
            out.append({"action": "set_limit", "limit": "max_position_qty", "value": value})
        elif kind == "symbol":
            out += [{"action": "disable_symbol", "symbol": _SYMBOL},
                    {"action": "enable_symbol", "symbol": _SYMBOL}]  # fmt: skip
        elif kind == "halt":
            out += [{"action": "halt", "flatten": False}, {"action": "resume"}]
        else:
            out.append({"action": "flatten", "symbol": _SYMBOL})
    return out[:n]


def control_case(
    ctx: RunContext, p: ControlParams, case: ControlFaults, seed: int, duration_s: float,
    result: Case,
) -> dict[str, Any]:  # fmt: skip
    """Run one control-hop case (see the module docstring); its figures."""
    work = ctx.work_dir / case.name
    work.mkdir(parents=True)
    db = work / "stress.db"
    (work / "session.toml").write_text(DETERMINISTIC)
    # long enough to outlast the commands; stopped (SIGINT) once they are done
    n_bars = int(p.control_bars_per_s * (duration_s * 4 + 120))
    session = subprocess.Popen(
        [*ultrathink_command(), "paper", "--data", f"synthetic:n_bars={n_bars},seed={seed},freq=1D",
         "--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=8",
         "--speed", f"{86_400 * p.control_bars_per_s:g}", "--db", str(db),
         "--config", str(work / "session.toml"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        control = _wait_control(session_dir(db, 1) / CONTROL_FILE_NAME, session)
        port = urlsplit(control["url"]).port or 80
        with FaultProxy(port, _faults(case), seed) as proxy:
            sent = _send_all(f"http://{proxy.url}", control["token"], p, case, seed, duration_s)
            stats = proxy.stats()
        session.send_signal(signal.SIGINT)
        out, err = session.communicate(timeout=_READY_S)
    finally:
        if session.poll() is None:
            session.kill()
            session.communicate()
    (work / "session.err").write_text(err)
    figures: dict[str, Any] = {f"proxy_{k}": stats.faults[k] for k in FAULT_KINDS}
    figures.update(injected_faults=stats.injected, proxy_units=stats.units,
                   proxy_connections=stats.connections)  # fmt: skip
    result.invariants.append(check_process(session.returncode, err, what="session"))
    res = json.loads(out) if out.strip() else {}
    figures["failed_sessions"] = 0 if session.returncode == 0 and res else 1
    if not res:
        result.invariants.append(Invariant("measured", False, f"no result: {err[-300:]}"))
        return figures
    result.invariants += check_run(db)
    figures.update(_account(db, sent, result))
    figures["trading_state"] = res.get("trading_state")
    return figures


def _faults(case: ControlFaults) -> Faults:
    return Faults(
        latency=case.latency, latency_ms=case.latency_ms,
        jitter_ms=min(case.jitter_ms, case.latency_ms), stall=case.stall, stall_s=case.stall_s,
        reset=case.reset, direction="both",
    )  # fmt: skip


def _wait_control(path: Path, session: subprocess.Popen[str]) -> dict[str, Any]:
    # the control file appears once the API listens: the readiness signal
    deadline = time.monotonic() + _READY_S
    while not path.exists():
        if session.poll() is not None:
            raise RuntimeError(f"the session ended (exit {session.returncode}) before {path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared within {_READY_S:g} s")
        time.sleep(0.02)
    return read_trusted(path)


def _send_all(
    url: str, token: str, p: ControlParams, case: ControlFaults, seed: int, duration_s: float
) -> list[dict[str, Any]]:
    # the commands spread over duration_s; each one's outcome as the client saw it
    rnd = random.Random(f"{seed}:duplicates")
    commands = command_sequence(p.control_commands, seed)
    period = duration_s / max(len(commands), 1)
    t0 = time.monotonic()
    sent: list[dict[str, Any]] = []
    for i, command in enumerate(commands):
        time.sleep(max(0.0, t0 + i * period - time.monotonic()))
        cid = f"{case.name}-{seed}-{i:04d}"
        payload = {**command, "operator": "stress", "reason": f"stress {cid}"}
        record = {"id": cid, "action": command["action"], **_send(url, token, payload, cid, p)}
        if record["outcome"] != "unconfirmed" and rnd.random() < case.duplicate:
            again = _send(url, token, payload, cid, p)  # the same message once more
            record["retries"] += again["retries"]
            record["duplicate_answer"] = again["outcome"]
        sent.append(record)
    return sent


def _send(url: str, token: str, payload: dict[str, Any], cid: str, p: ControlParams
          ) -> dict[str, Any]:  # fmt: skip
    try:
        done = send_command(url, token, payload, command_id=cid, timeout_s=p.control_timeout_s,
                            attempts=p.control_attempts,
                            deadline_s=p.control_timeout_s * p.control_attempts * 2)  # fmt: skip
    except CommandUnconfirmed as exc:
        return {"outcome": "unconfirmed", "retries": exc.attempts - 1, "error": str(exc)}
    except ControlClientError as exc:  # an answer: 409 refused (never retried)
        return {"outcome": "refused", "retries": 0, "error": str(exc)}
    outcome = "repeat" if done.result.get("repeat") else "applied"
    return {"outcome": outcome, "retries": done.attempts - 1}


def _account(db: Path, sent: list[dict[str, Any]], result: Case) -> dict[str, Any]:
    with Store(db, readonly=True) as store:
        rows = store.audit_details(1, ("operator.",))
    rows_of: dict[str, list[str]] = {}
    for kind, detail in rows:
        reason = str(json.loads(detail).get("reason", ""))
        if reason.startswith("stress "):
            rows_of.setdefault(reason.removeprefix("stress "), []).append(kind)
    outcomes = Counter(r["outcome"] for r in sent)
    duplicated = sum(len(rows_of.get(r["id"], [])) > 1 for r in sent)
    lost = unconfirmed_applied = 0
    for r in sent:
        kinds = rows_of.get(r["id"], [])
        if r["outcome"] in ("applied", "repeat"):
            lost += f"operator.{r['action']}" not in kinds
        elif r["outcome"] == "refused":
            lost += "operator.refused" not in kinds and "HTTP 409" in r["error"]
        else:
            unconfirmed_applied += bool(kinds)
    invented = len(set(rows_of) - {r["id"] for r in sent})
    repeats = sum(r["outcome"] == "repeat" or r.get("duplicate_answer") == "repeat" for r in sent)
    result.invariants.append(Invariant(
        "commands_exactly_once", duplicated == 0 and lost == 0 and invented == 0,
        f"{len(sent)} commands: {outcomes['applied'] + outcomes['repeat']} applied "
        f"({outcomes['repeat']} answered as a repeat after a lost answer), "
        f"{outcomes['refused']} refused, {outcomes['unconfirmed']} unconfirmed "
        f"({unconfirmed_applied} of them applied per the audit); {len(rows)} audit rows"
        + (f"; {duplicated} DUPLICATED" if duplicated else "")
        + (f"; {lost} LOST" if lost else "") + (f"; {invented} invented" if invented else ""),
    ))  # fmt: skip
    return {
        "control_commands": len(sent),
        "applied_commands": outcomes["applied"] + outcomes["repeat"],
        "refused_commands": outcomes["refused"],
        "unconfirmed_commands": outcomes["unconfirmed"],
        "unconfirmed_applied": unconfirmed_applied,
        "command_retries": sum(r["retries"] for r in sent),
        "command_repeats": repeats,
        "duplicated_commands": duplicated + invented,
        "lost_commands": lost,
    }
