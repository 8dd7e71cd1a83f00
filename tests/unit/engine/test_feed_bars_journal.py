"""The feed journal of a ``FeedBars`` session: a resume after a torn write appends cleanly."""

from __future__ import annotations

from pathlib import Path

from ultrathink.core.events import Bar
from ultrathink.engine.feed_bars import FeedBars, read_feed_journal
from ultrathink.feed import encode_bar

T0 = 1_704_205_800_000_000_000


def _bar(i: int, symbol: str = "SPY") -> Bar:
    return Bar(T0 + i * 60_000_000_000, symbol, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 10.0)


def test_a_resume_after_a_torn_write_appends_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "feed.ndjson"
    torn = encode_bar(_bar(2))[:30]  # the process died inside this write
    path.write_bytes(encode_bar(_bar(0)) + encode_bar(_bar(1)) + torn)
    feed = FeedBars("tcp://127.0.0.1:9", ["SPY"])
    feed.attach_journal(path, resume=True)
    assert feed.history == [_bar(0), _bar(1)]

    feed._write([_bar(2)])  # the kernel's next timestamp after the resume
    feed._write([_bar(3)])
    feed.close()

    assert read_feed_journal(path) == [_bar(0), _bar(1), _bar(2), _bar(3)]
    assert path.read_bytes().endswith(b"\n") and feed.journaled == 2
