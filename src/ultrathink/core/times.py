"""UTC nanosecond timestamps as text, without pandas (the engine path never imports it)."""

from __future__ import annotations

from datetime import UTC, datetime

_NS = 1_000_000_000


def iso_ns(ts_ns: int) -> str:
    """ISO-8601 UTC text of ``ts_ns``: ``2020-01-02T09:30:00+00:00``, with the fraction
    (micro- or nanoseconds) only when it is not zero."""
    seconds, frac_ns = divmod(int(ts_ns), _NS)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac_ns:
        text += f".{frac_ns:09d}".rstrip("0") if frac_ns % 1000 else f".{frac_ns // 1000:06d}"
    return text + "+00:00"
