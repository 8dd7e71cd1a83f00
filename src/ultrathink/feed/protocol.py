"""The live feed's wire protocol: newline-delimited JSON over TCP (docs/feed.md).

One message per line, UTF-8, ``\\n``-terminated (a trailing ``\\r`` is tolerated, empty
lines are ignored)::

    {"type":"bar","sym":"SPY","ts":1704205800000000000,"o":470.1,"h":470.9,"l":469.8,
     "c":470.5,"v":1200.0,"seq":17}
    {"type":"hb","ts":1704205801000000000}

``ts`` is an integer, nanoseconds since the epoch (UTC): a bar's period start, as
``core.events.Bar.ts_ns``; a heartbeat's send time. ``seq`` (optional) is the publisher's
message counter, used only to count gaps. Unknown fields are ignored, so a later version may
add some.

Why newline-delimited JSON, not msgpack or WebSocket: a bar is ~110-170 bytes and a session
receives at most thousands per second, so neither the size nor the parse cost decides —
orjson parses one bar line in 1.0-1.4 µs and ``decode_line`` with every check takes ~4 µs
(docs/feed.md gives the figures and the command), the order of the kernel's own work per bar
(1.7 µs for ``sma_cross``, ~10 µs for an ML decision). What decides is that NDJSON is
readable as it is: ``nc 127.0.0.1 9100`` shows the feed, ``printf '...\\n' | nc -l 9100`` is a
publisher, and every language can write it with its standard library. msgpack saves a few
bytes and hides them from ``nc`` and logs; WebSocket adds a handshake, framing and masking
for a browser peer this feed never has. TCP is a byte stream without message boundaries, and
a newline is the cheapest frame there is; the line length is bounded (``MAX_LINE_BYTES``) so
a peer cannot make the reader buffer without end.

Decoding checks one message on its own (the rules of ``data/validate.py``, one bar at a
time); the rules about a stream — known symbols, increasing ``ts`` per symbol, duplicates
across feeds — are ``arbiter.FeedArbiter``'s. A bad message raises ``MessageError`` with one
of ``MALFORMED_REASONS``; the client counts it and drops it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import orjson

from ultrathink.core.events import Bar

__all__ = [
    "BAD_DATA_REASONS",
    "MALFORMED_REASONS",
    "MAX_LINE_BYTES",
    "MAX_SYMBOL_CHARS",
    "BarMessage",
    "Heartbeat",
    "Item",
    "LineSplitter",
    "MessageError",
    "decode_line",
    "decode_lines",
    "encode_bar",
    "encode_heartbeat",
]

#: The longest line a reader accepts, newline excluded (64 KiB): longer ones are dropped.
MAX_LINE_BYTES = 65_536
#: The longest symbol accepted.
MAX_SYMBOL_CHARS = 64

#: Why a message was dropped, in the order the checks run.
MALFORMED_REASONS: tuple[str, ...] = (
    "line_too_long",  # a line longer than the reader's limit (dropped unread)
    "truncated",  # a partial line cut off by a disconnect
    "not_json",  # not UTF-8 JSON, or a JSON value that is not an object
    "unknown_type",  # "type" missing or not "bar"/"hb"
    "bad_field",  # a field missing or of the wrong type (ts not an integer, ...)
    "non_positive_price",  # a price <= 0 (validate.py: non_positive_price)
    "ohlc_inconsistent",  # high < max(open, close) or low > min(open, close)
    "negative_volume",  # volume < 0 (validate.py: negative_volume)
    "unknown_symbol",  # a symbol outside the client's symbol set
    "duplicate",  # the same connection sent this symbol's ts again
    "out_of_order",  # the same connection sent a ts before this symbol's last one
)
#: The reasons that count against a source's health (``FeedConfig.max_bad``): a symbol the
#: session does not trade and a line cut by a disconnect say nothing about the data's quality.
BAD_DATA_REASONS = frozenset(MALFORMED_REASONS) - {"unknown_symbol", "truncated"}

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_DUMPS_OPTS = orjson.OPT_APPEND_NEWLINE
_QUOTED = 80  # characters of a bad value shown in a detail


class MessageError(Exception):
    """A message that cannot be used: ``reason`` (one of ``MALFORMED_REASONS``), ``detail``.

    ``symbol``, ``ts_ns`` and ``seq`` are set when a bar was readable enough to name them,
    so the client can tell which bar a feed failed to deliver and keep counting ``seq``.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        symbol: str | None = None,
        ts_ns: int | None = None,
        seq: int | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.symbol = symbol
        self.ts_ns = ts_ns
        self.seq = seq


class BarMessage(NamedTuple):
    """A decoded bar and the publisher's ``seq`` (None when the message has none)."""

    bar: Bar
    seq: int | None


class Heartbeat(NamedTuple):
    """A decoded heartbeat: the publisher's send time (UTC ns)."""

    ts_ns: int


Message = BarMessage | Heartbeat
#: What a connection read: a decoded message, or why a line was dropped.
Item = BarMessage | Heartbeat | MessageError


def encode_bar(bar: Bar, seq: int | None = None) -> bytes:
    """Return ``bar`` as one protocol line (newline included).

    Floats are written in their shortest round-trip form, so ``decode_line`` gives back the
    same bits. Nothing is checked: a publisher may send a bad bar on purpose (tests, stress).
    """
    msg: dict[str, object] = {
        "type": "bar",
        "sym": bar.symbol,
        "ts": bar.ts_ns,
        "o": bar.open,
        "h": bar.high,
        "l": bar.low,
        "c": bar.close,
        "v": bar.volume,
    }
    if seq is not None:
        msg["seq"] = seq
    return orjson.dumps(msg, option=_DUMPS_OPTS)


def encode_heartbeat(ts_ns: int) -> bytes:
    """Return a heartbeat sent at ``ts_ns`` (UTC ns) as one protocol line."""
    return orjson.dumps({"type": "hb", "ts": ts_ns}, option=_DUMPS_OPTS)


def decode_line(line: bytes) -> Message:
    """Decode one line (without its newline) into a ``BarMessage`` or a ``Heartbeat``.

    Raises
    ------
    MessageError
        ``not_json``, ``unknown_type``, ``bad_field``, ``non_positive_price``,
        ``ohlc_inconsistent`` or ``negative_volume``, with the offending value.
    """
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise MessageError("not_json", f"{exc}: {_quote(line)}") from None
    if type(msg) is not dict:
        raise MessageError("not_json", f"a JSON {type(msg).__name__}, not an object")
    kind = msg.get("type")
    if kind == "bar":
        return _decode_bar(msg)
    if kind == "hb":
        ts = msg.get("ts")
        if type(ts) is not int or not _INT64_MIN <= ts <= _INT64_MAX:
            raise MessageError("bad_field", f"heartbeat ts must be integer ns, was {_quote(ts)}")
        return Heartbeat(ts)
    raise MessageError("unknown_type", f'"type" must be "bar" or "hb", was {_quote(kind)}')


def decode_lines(lines: Iterable[bytes | None], max_line_bytes: int) -> list[Item]:
    """Decode ``LineSplitter`` output: a message, or the ``MessageError`` of each bad line."""
    out: list[Item] = []
    for line in lines:
        if line is None:
            detail = f"a line longer than {max_line_bytes} bytes was dropped unread"
            out.append(MessageError("line_too_long", detail))
            continue
        try:
            out.append(decode_line(line))
        except MessageError as exc:
            out.append(exc)
    return out


def _decode_bar(msg: dict[str, object]) -> BarMessage:
    seq = msg.get("seq")
    if seq is not None and (type(seq) is not int or seq < 0):
        raise MessageError("bad_field", f"seq must be an integer >= 0, was {_quote(seq)}")
    try:
        sym, ts = msg["sym"], msg["ts"]
        o, h, lo, c, v = msg["o"], msg["h"], msg["l"], msg["c"], msg["v"]
    except KeyError as exc:
        raise MessageError("bad_field", f"bar has no {exc} field", seq=seq) from None
    if type(sym) is not str or not 0 < len(sym) <= MAX_SYMBOL_CHARS or not _clean(sym):
        detail = f"sym must be a non-empty symbol, was {_quote(sym)}"
        raise MessageError("bad_field", detail, seq=seq)
    if type(ts) is not int or not _INT64_MIN <= ts <= _INT64_MAX:
        detail = f"ts must be integer ns (int64), was {_quote(ts)}"
        raise MessageError("bad_field", detail, sym, seq=seq)
    # orjson refuses NaN and Infinity (not JSON), so every float here is finite; type() is
    # exact, so a bool (an int subclass) is refused
    if type(o) is not float:
        o = _number(o, "o", sym, ts, seq)
    if type(h) is not float:
        h = _number(h, "h", sym, ts, seq)
    if type(lo) is not float:
        lo = _number(lo, "l", sym, ts, seq)
    if type(c) is not float:
        c = _number(c, "c", sym, ts, seq)
    if type(v) is not float:
        v = _number(v, "v", sym, ts, seq)
    if not (o > 0 and h > 0 and lo > 0 and c > 0):
        detail = f"prices must be > 0 {_ohlcv(msg)}"
        raise MessageError("non_positive_price", detail, sym, ts, seq)
    if h < (o if o > c else c) or lo > (o if o < c else c):
        detail = f"need high >= max(open, close) >= min(open, close) >= low {_ohlcv(msg)}"
        raise MessageError("ohlc_inconsistent", detail, sym, ts, seq)
    if v < 0:
        raise MessageError("negative_volume", f"volume must be >= 0 {_ohlcv(msg)}", sym, ts, seq)
    return BarMessage(tuple.__new__(Bar, (ts, sym, o, h, lo, c, v)), seq)


def _number(value: object, name: str, sym: str, ts: int, seq: int | None) -> float:
    if type(value) is int:
        return float(value)
    detail = f"{name} must be a number, was {_quote(value)}"
    raise MessageError("bad_field", detail, sym, ts, seq)


def _clean(sym: str) -> bool:
    # printable, no surrounding blanks: what data/validate.py would keep as the same symbol
    return sym.isprintable() and sym.strip() == sym


def _ohlcv(msg: dict[str, object]) -> str:
    return "(" + ", ".join(f"{k}={msg[k]!r}" for k in ("o", "h", "l", "c", "v")) + ")"


def _quote(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: _QUOTED + 1]).decode("utf-8", "replace")
    text = repr(value)
    return text if len(text) <= _QUOTED else text[:_QUOTED] + "…"


class LineSplitter:
    """Cut a byte stream into lines, dropping any line longer than ``max_line_bytes``.

    ``feed(chunk)`` returns the complete lines the chunk ends (without ``\\n``; a trailing
    ``\\r`` is left for the JSON parser, which skips it) and ``None`` for each line that was
    too long: such a line is not kept while it grows, so memory stays under the limit
    whatever a peer sends. Empty lines (also a lone ``\\r``) are skipped.
    """

    __slots__ = ("_max", "_pending", "_skipping")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._pending = bytearray()
        self._skipping = False  # inside a line already reported as too long

    @property
    def pending_bytes(self) -> int:
        """Bytes of the unfinished last line (0 while skipping an over-long one)."""
        return len(self._pending)

    def feed(self, chunk: bytes) -> list[bytes | None]:
        """Return the lines completed by ``chunk``: bytes, or None for a too-long line."""
        parts = chunk.split(b"\n")
        out: list[bytes | None] = []
        tail = parts.pop()  # the unfinished last line ('' when the chunk ends a line)
        if parts:
            first = parts[0]
            if self._skipping:
                self._skipping = False  # the over-long line ends here: already reported
                parts = parts[1:]
            elif self._pending:
                self._pending += first
                parts[0] = bytes(self._pending)
                self._pending.clear()
            limit = self._max
            for line in parts:
                if len(line) > limit:
                    out.append(None)
                elif line and line != b"\r":
                    out.append(line)
        if tail and not self._skipping:
            self._pending += tail
            if len(self._pending) > self._max:
                self._pending.clear()
                self._skipping = True
                out.append(None)
        return out

    def reset(self) -> int:
        """Forget the unfinished line (a new connection); return how many bytes it had."""
        n_bytes = len(self._pending)
        self._pending.clear()
        self._skipping = False
        return n_bytes
