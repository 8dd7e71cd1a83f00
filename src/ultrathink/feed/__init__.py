"""The live market-data feed: protocol, client (primary + backup) and reference publisher.

``ultrathink paper --feed tcp://127.0.0.1:PORT[,tcp://127.0.0.1:PORT2]`` trades the bars that
arrive on a feed: newline-delimited JSON over TCP (``feed.protocol``, docs/feed.md).
``FeedClient`` reads it on its own thread, fails over to the backup and back without a gap
or a duplicate (``feed.arbiter``), and hands bars to the kernel through a bounded, conflating
queue (``feed.conflation``). ``FeedPublisher`` is the reference server, used by the tests and
the stress load generator.

``feed`` imports ``core`` and ``ultrathink.errors`` only, like ``hardening``; the engine will
wire it.
"""

from ultrathink.feed.address import FeedAddress, parse_feed_url, parse_feed_urls
from ultrathink.feed.arbiter import FeedArbiter
from ultrathink.feed.client import FeedClient
from ultrathink.feed.config import FeedConfig
from ultrathink.feed.conflation import SHED_REASONS, ConflatingQueue
from ultrathink.feed.protocol import (
    BAD_DATA_REASONS,
    MALFORMED_REASONS,
    MAX_LINE_BYTES,
    BarMessage,
    Heartbeat,
    LineSplitter,
    MessageError,
    decode_line,
    encode_bar,
    encode_heartbeat,
)
from ultrathink.feed.publisher import DISCONNECT_REASONS, FeedPublisher, PublisherStats
from ultrathink.feed.stats import SWITCH_REASONS, FeedStats, SourceStats, SwitchEvent

__all__ = [
    "BAD_DATA_REASONS",
    "DISCONNECT_REASONS",
    "MALFORMED_REASONS",
    "MAX_LINE_BYTES",
    "SHED_REASONS",
    "SWITCH_REASONS",
    "BarMessage",
    "ConflatingQueue",
    "FeedAddress",
    "FeedArbiter",
    "FeedClient",
    "FeedConfig",
    "FeedPublisher",
    "FeedStats",
    "Heartbeat",
    "LineSplitter",
    "MessageError",
    "PublisherStats",
    "SourceStats",
    "SwitchEvent",
    "decode_line",
    "encode_bar",
    "encode_heartbeat",
    "parse_feed_url",
    "parse_feed_urls",
]
