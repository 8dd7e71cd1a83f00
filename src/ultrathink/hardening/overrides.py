"""Operator commands: what a person may do to a running session, validated before it runs.

Each command is a frozen pydantic model that names the operator and the reason (both land in
the audit trail with the time and the state before and after). ``parse_command`` turns a
JSON object into one, or raises ``OverrideError`` with a message that names the field, the
rule, the value and the fix. The engine executes commands on its kernel thread
(``engine/control.py``); the HTTP endpoint and the CLI only parse and forward them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ultrathink.errors import UltrathinkError

#: Names of the circuit breakers an operator may force (see ``engine/guards.py``).
BREAKER_NAMES = ("decision", "market_data", "execution", "risk")

#: Risk limits that may be changed at runtime (fields of ``RiskConfig``).
MUTABLE_LIMITS = (
    "max_position_qty",
    "max_position_notional",
    "max_order_notional",
    "max_gross_exposure_pct",
    "max_open_orders",
    "price_band_pct",
    "max_daily_loss_pct",
    "max_drawdown_pct",
)


class OverrideError(UltrathinkError, ValueError):
    """An operator command was refused: invalid, unauthorised or not applicable now."""


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    operator: str = Field(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$")
    reason: str = Field(default="", max_length=500)


class Halt(_Command):
    """The kill switch: HALTED, cancel every working order, flatten unless told not to."""

    action: Literal["halt"] = "halt"
    flatten: bool = True


class Resume(_Command):
    """Back to ACTIVE from HALTED or an operator REDUCING (needs a reason)."""

    action: Literal["resume"] = "resume"
    reason: str = Field(min_length=1, max_length=500)


class Reduce(_Command):
    """Only exposure-reducing orders pass until ``resume``."""

    action: Literal["reduce"] = "reduce"


class Flatten(_Command):
    """Close one symbol's position (or all with ``symbol`` unset) with reduce-only orders."""

    action: Literal["flatten"] = "flatten"
    symbol: str | None = Field(default=None, min_length=1)


class SetLimit(_Command):
    """Change one risk limit; ``value`` None switches the limit off."""

    action: Literal["set_limit"] = "set_limit"
    limit: Literal[MUTABLE_LIMITS]  # type: ignore[valid-type]
    value: float | None = Field(allow_inf_nan=False)


class SymbolSwitch(_Command):
    """Disable (only reducing orders pass) or re-enable trading in one symbol."""

    action: Literal["disable_symbol", "enable_symbol"]
    symbol: str = Field(min_length=1)


class ForceBreaker(_Command):
    """Force a circuit breaker OPEN (its fallback takes over) or CLOSED (calls pass)."""

    action: Literal["force_breaker"] = "force_breaker"
    breaker: Literal[BREAKER_NAMES]  # type: ignore[valid-type]
    state: Literal["open", "closed"]


class Status(_Command):
    """Read the session's state (not audited: it changes nothing)."""

    action: Literal["status"] = "status"
    operator: str = Field(default="anonymous", min_length=1, max_length=64)


Command = Annotated[
    Halt | Resume | Reduce | Flatten | SetLimit | SymbolSwitch | ForceBreaker | Status,
    Field(discriminator="action"),
]
_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)

#: Every accepted ``action`` value.
ACTIONS = (
    "halt",
    "resume",
    "reduce",
    "flatten",
    "set_limit",
    "disable_symbol",
    "enable_symbol",
    "force_breaker",
    "status",
)


def parse_command(payload: Any) -> Command:
    """Validate a JSON object into a command, or raise ``OverrideError`` saying what is wrong."""
    if not isinstance(payload, dict):
        raise OverrideError(f"a command must be a JSON object, was {type(payload).__name__}")
    action = payload.get("action")
    if action not in ACTIONS:
        raise OverrideError(f"action must be one of {', '.join(ACTIONS)}, was {action!r}")
    try:
        return _ADAPTER.validate_python(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'command'}: {err['msg']}"
            f" (was {err.get('input')!r})"
            for err in exc.errors()
        )
        raise OverrideError(f"invalid {action} command: {problems}") from None
