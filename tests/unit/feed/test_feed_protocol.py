"""The wire protocol without sockets: encoding, decoding, each rejection, lines, URLs."""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.feed.feed_fixtures import make_bar

from ultrathink.core.events import Bar
from ultrathink.errors import ConfigError
from ultrathink.feed import (
    BAD_DATA_REASONS,
    MALFORMED_REASONS,
    BarMessage,
    FeedAddress,
    Heartbeat,
    LineSplitter,
    MessageError,
    decode_line,
    encode_bar,
    encode_heartbeat,
    parse_feed_url,
    parse_feed_urls,
)
from ultrathink.feed.protocol import decode_lines

POSITIVE = st.floats(min_value=5e-324, allow_nan=False, allow_infinity=False)


def _bits(bar: Bar) -> bytes:
    return struct.pack("<q5d", bar.ts_ns, bar.open, bar.high, bar.low, bar.close, bar.volume)


@settings(max_examples=300, deadline=None)
@given(
    a=POSITIVE,
    b=POSITIVE,
    up=POSITIVE,
    down=st.floats(min_value=0.0, max_value=1.0),
    volume=st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
    ts=st.integers(-(2**63), 2**63 - 1),
    seq=st.none() | st.integers(0, 2**63 - 1),
)
def test_a_bar_round_trips_bit_for_bit(
    a: float, b: float, up: float, down: float, volume: float, ts: int, seq: int | None
) -> None:
    high = max(a, b, min(max(a, b) + up, 1.7976931348623157e308))
    low = min(a, b) * down if down > 0 and min(a, b) * down > 0 else min(a, b)
    bar = Bar(ts, "BRK.B", a, high, low, b, volume)
    line = encode_bar(bar, seq)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = decode_line(line[:-1])
    assert isinstance(decoded, BarMessage)
    assert decoded.seq == seq
    assert decoded.bar == bar and _bits(decoded.bar) == _bits(bar)
    assert type(decoded.bar) is Bar and all(type(x) is float for x in decoded.bar[2:])


def test_the_documented_example_lines_decode() -> None:
    line = (
        b'{"type":"bar","sym":"SPY","ts":1704205800000000000,"o":470.1,"h":470.9,"l":469.8,'
        b'"c":470.5,"v":1200,"seq":17,"venue":"ignored"}\r'
    )
    assert decode_line(line) == BarMessage(
        Bar(1704205800000000000, "SPY", 470.1, 470.9, 469.8, 470.5, 1200.0), 17
    )
    assert decode_line(b'{"type":"hb","ts":5}') == Heartbeat(5)
    assert decode_line(encode_heartbeat(7)[:-1]) == Heartbeat(7)


def _bar_line(**fields: object) -> bytes:
    msg: dict[str, object] = {"type": "bar", "sym": "SPY", "ts": 1, "o": 10.0, "h": 11.0}
    msg.update({"l": 9.0, "c": 10.5, "v": 5.0})
    msg.update(fields)
    return orjson.dumps({k: v for k, v in msg.items() if v is not _MISSING})


_MISSING = object()

REJECTED = [
    (b"hello", "not_json"),
    (b'{"type":"bar","sym":', "not_json"),
    (b"\xff\xfe{}", "not_json"),
    (b"[1, 2]", "not_json"),
    (b'{"type":"bar","o":NaN}', "not_json"),
    (b'{"type":"bar","o":1e400}', "not_json"),
    (b'{"type":"trade"}', "unknown_type"),
    (b'{"ts":1}', "unknown_type"),
    (b'{"type":"hb","ts":"now"}', "bad_field"),
    (b'{"type":"hb"}', "bad_field"),
    (_bar_line(c=_MISSING), "bad_field"),
    (_bar_line(sym=""), "bad_field"),
    (_bar_line(sym=" SPY"), "bad_field"),
    (_bar_line(sym=7), "bad_field"),
    (_bar_line(sym="S" * 65), "bad_field"),
    (_bar_line(ts=1.0), "bad_field"),
    (_bar_line(ts=True), "bad_field"),
    (_bar_line(ts=2**63), "bad_field"),
    (_bar_line(o="10"), "bad_field"),
    (_bar_line(v=True), "bad_field"),
    (_bar_line(v=None), "bad_field"),
    (_bar_line(seq=-1), "bad_field"),
    (_bar_line(seq=1.5), "bad_field"),
    (_bar_line(o=0.0), "non_positive_price"),
    (_bar_line(l=-9.0), "non_positive_price"),
    (_bar_line(h=10.4), "ohlc_inconsistent"),
    (_bar_line(l=10.1), "ohlc_inconsistent"),
    (_bar_line(v=-1.0), "negative_volume"),
]


@pytest.mark.parametrize(("line", "reason"), REJECTED)
def test_each_bad_message_is_rejected_with_its_reason(line: bytes, reason: str) -> None:
    with pytest.raises(MessageError) as info:
        decode_line(line)
    assert info.value.reason == reason
    assert reason in MALFORMED_REASONS
    assert len(str(info.value)) < 400 and "\n" not in str(info.value)


def test_a_rejected_bar_names_its_symbol_ts_and_seq() -> None:
    with pytest.raises(MessageError) as info:
        decode_line(_bar_line(h=10.4, ts=42, seq=9))
    assert (info.value.symbol, info.value.ts_ns, info.value.seq) == ("SPY", 42, 9)


def test_integers_are_accepted_as_prices_and_volume() -> None:
    decoded = decode_line(_bar_line(o=10, h=11, l=9, c=10, v=0))
    assert isinstance(decoded, BarMessage)
    assert decoded.bar[2:] == (10.0, 11.0, 9.0, 10.0, 0.0)
    assert all(type(x) is float for x in decoded.bar[2:])


def test_reasons_that_do_not_judge_data_quality_are_not_bad_data() -> None:
    assert "unknown_symbol" not in BAD_DATA_REASONS and "truncated" not in BAD_DATA_REASONS
    assert {"not_json", "ohlc_inconsistent", "out_of_order"} <= BAD_DATA_REASONS


def test_line_splitter_joins_chunks_and_drops_long_lines_without_keeping_them() -> None:
    splitter = LineSplitter(max_line_bytes=8)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\n\n\r\nde") == [b"abc"]
    assert splitter.feed(b"f\n123456789") == [b"def", None]  # over the limit: reported once
    assert splitter.pending_bytes == 0
    assert splitter.feed(b"0123456789" * 100) == []  # still the same long line: not kept
    assert splitter.pending_bytes == 0
    assert splitter.feed(b"tail\nok\n12345678\n123456789\n") == [b"ok", b"12345678", None]
    assert splitter.feed(b"half") == []
    assert splitter.reset() == 4
    assert splitter.feed(b"new\n") == [b"new"]


def test_decode_lines_turns_every_line_into_a_message_or_its_error() -> None:
    items = decode_lines([encode_bar(make_bar(1))[:-1], None, b"x"], max_line_bytes=64)
    assert isinstance(items[0], BarMessage) and items[0].bar == make_bar(1)
    assert isinstance(items[1], MessageError) and items[1].reason == "line_too_long"
    assert isinstance(items[2], MessageError) and items[2].reason == "not_json"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://127.0.0.1:9100", FeedAddress("127.0.0.1", 9100)),
        (" tcp://localhost:1/ ", FeedAddress("localhost", 1)),
        ("tcp://[::1]:65535", FeedAddress("::1", 65535)),
        ("tcp://127.8.0.1:80", FeedAddress("127.8.0.1", 80)),
    ],
)
def test_parse_feed_url_accepts_loopback_tcp_addresses(url: str, expected: FeedAddress) -> None:
    assert parse_feed_url(url) == expected
    assert parse_feed_url(expected.url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:9100", "must start with tcp://"),
        ("127.0.0.1:9100", "must start with tcp://"),
        ("tcp://127.0.0.1", "needs a host and a port"),
        ("tcp://:9100", "needs a host and a port"),
        ("tcp://127.0.0.1:0", "needs a host and a port"),
        ("tcp://127.0.0.1:99999", "is invalid"),
        ("tcp://127.0.0.1:port", "is invalid"),
        ("tcp://127.0.0.1:9100/bars", "no path, query or credentials"),
        ("tcp://127.0.0.1:9100?x=1", "no path, query or credentials"),
        ("tcp://user@127.0.0.1:9100", "no path, query or credentials"),
        ("tcp://10.0.0.5:9100", "not a loopback address"),
        ("tcp://feed.example.com:9100", "no authentication or encryption"),
    ],
)
def test_parse_feed_url_refuses_with_a_one_line_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_feed_url(url)
    assert "\n" not in str(info.value) and "tcp://" in str(info.value)


def test_a_remote_host_needs_allow_remote() -> None:
    with pytest.raises(ConfigError, match="allow_remote=True"):
        parse_feed_url("tcp://10.0.0.5:9100")
    assert parse_feed_url("tcp://10.0.0.5:9100", allow_remote=True) == FeedAddress("10.0.0.5", 9100)


def test_parse_feed_urls_takes_a_primary_and_an_optional_backup() -> None:
    primary = FeedAddress("127.0.0.1", 9100)
    assert parse_feed_urls("tcp://127.0.0.1:9100") == (primary, None)
    assert parse_feed_urls("tcp://127.0.0.1:9100, tcp://127.0.0.1:9101") == (
        primary,
        FeedAddress("127.0.0.1", 9101),
    )
    for spec, message in [
        ("", "a primary URL and optionally one backup"),
        ("tcp://127.0.0.1:1,", "a primary URL and optionally one backup"),
        ("tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://127.0.0.1:3", "optionally one backup"),
        ("tcp://127.0.0.1:1,tcp://127.0.0.1:1", "a backup must be another publisher"),
        ("tcp://127.0.0.1:1,http://127.0.0.1:2", "must start with tcp://"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_feed_urls(spec)
