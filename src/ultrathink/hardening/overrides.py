"""Operator commands: what a person may do to a running session, validated before it runs.

Each command is a frozen pydantic model that names the operator and the reason (both land in
the audit trail with the time and the state before and after). ``parse_command`` turns a
JSON object into one, or raises ``OverrideError`` with a message that names the field, the
rule, the value and the fix. The engine executes commands on its kernel thread
(``engine/control.py``); the HTTP endpoint and the CLI only parse and forward them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

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


_SHOWN_CHARS = 60  # of a bad value in an error message
_SHOWN_ERRORS = 5  # problems listed in one message; the rest are counted


class OverrideError(UltrathinkError, ValueError):
    """An operator command was refused: invalid, unauthorised or not applicable now."""


def _printable(value: str) -> str:
    # operator, reason and symbol land in the audit trail and on terminals: no control,
    # format (bidi overrides, zero-width) or unpaired surrogate characters, no newlines
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        raise ValueError(
            f"must be printable text on one line, had the character {bad!r} at position "
            f"{value.index(bad)}; remove it"
        )
    return value


#: Text that reaches the audit trail: printable, one line.
Text = Annotated[str, AfterValidator(_printable)]
#: A name: printable, no leading or trailing whitespace.
Name = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$"), AfterValidator(_printable)
]


class _Command(BaseModel):
    # strict: no type coercion (true is not 1.0, "5" is not 5; an int is still a float)
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    operator: Name
    reason: Text = Field(default="", max_length=500)


class Halt(_Command):
    """The kill switch: HALTED, cancel every working order, flatten unless told not to."""

    action: Literal["halt"] = "halt"
    flatten: bool = True


class Resume(_Command):
    """Back to ACTIVE from HALTED or an operator REDUCING (needs a reason)."""

    action: Literal["resume"] = "resume"
    reason: Text = Field(min_length=1, max_length=500)


class Reduce(_Command):
    """Only exposure-reducing orders pass until ``resume``."""

    action: Literal["reduce"] = "reduce"


class Flatten(_Command):
    """Close one symbol's position (or all with ``symbol`` unset) with reduce-only orders."""

    action: Literal["flatten"] = "flatten"
    symbol: Name | None = None


class SetLimit(_Command):
    """Change one risk limit; ``value`` None switches the limit off."""

    action: Literal["set_limit"] = "set_limit"
    limit: Literal[MUTABLE_LIMITS]  # type: ignore[valid-type]
    value: float | None = Field(allow_inf_nan=False)


class SymbolSwitch(_Command):
    """Disable (only reducing orders pass) or re-enable trading in one symbol."""

    action: Literal["disable_symbol", "enable_symbol"]
    symbol: Name


class ForceBreaker(_Command):
    """Force a circuit breaker OPEN (its fallback takes over) or CLOSED (calls pass)."""

    action: Literal["force_breaker"] = "force_breaker"
    breaker: Literal[BREAKER_NAMES]  # type: ignore[valid-type]
    state: Literal["open", "closed"]


class Status(_Command):
    """Read the session's state (not audited: it changes nothing)."""

    action: Literal["status"] = "status"
    operator: Name = "anonymous"


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
    if not isinstance(action, str) or action not in ACTIONS:
        raise OverrideError(f"action must be one of {', '.join(ACTIONS)}, was {_shown(action)}")
    try:
        return _ADAPTER.validate_python(payload)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [
            f"{'.'.join(_shown_key(p) for p in err['loc'][1:]) or 'command'}: {_rule(err)} "
            f"(was {_shown(err.get('input'))})"
            for err in errors[:_SHOWN_ERRORS]
        ]
        if len(errors) > _SHOWN_ERRORS:
            problems.append(f"and {len(errors) - _SHOWN_ERRORS} more problems")
        raise OverrideError(f"invalid {action} command: {'; '.join(problems)}") from None


_RULES = {
    "float_type": "must be a number (e.g. 12.5), or null for no limit",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode text",
    "extra_forbidden": "not a field of this command; remove it",
}


def _rule(err: Any) -> str:
    rule = _RULES.get(err["type"]) or err["msg"].removeprefix("Value error, ")
    return str(rule).replace("Input should be", "must be", 1)


def _shown_key(part: str | int) -> str:
    text = str(part)
    return text if text.isprintable() and len(text) <= 40 else _shown(text)


def _shown(value: Any) -> str:
    # a bad value is echoed to the operator and the audit trail: escaped, one line, bounded
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
