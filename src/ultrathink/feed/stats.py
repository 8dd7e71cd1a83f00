"""What a feed client reports: switch events and counter snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["SWITCH_REASONS", "FeedStats", "SourceStats", "SwitchEvent"]

#: Why the client switched source: the active one stalled, disconnected or sent bad data, or
#: (back to the primary) the primary has been healthy for ``failback_s``.
SWITCH_REASONS: tuple[str, ...] = ("stall", "disconnect", "bad_data", "recovered")


class SwitchEvent(NamedTuple):
    """One change of the source the bars are taken from.

    ``ts_ns`` is the wall-clock time of the switch (UTC ns); ``from_source`` and
    ``to_source`` are ``"primary"`` or ``"backup"``; ``reason`` is one of
    ``SWITCH_REASONS`` and ``detail`` says it with the figures. ``gapless`` is True when the
    new source is known to have sent, for every symbol it sent since it was last healthy, a
    bar the consumer already had, so none of its later bars can be missing (always the case
    for a failback; a failover takes an unhealthy source's place at once, even without it).
    """

    ts_ns: int
    from_source: str
    to_source: str
    reason: str
    detail: str
    gapless: bool


@dataclass(frozen=True)
class SourceStats:
    """Counters of one source (``primary`` or ``backup``) of a feed client."""

    name: str
    url: str
    connected: bool
    healthy: bool
    received: int  # messages (lines) read from this source
    malformed: int  # of which dropped as invalid
    connects: int  # connections established
    connect_failures: int
    held: int  # standby bars kept for a failover (0 while active)
    seq_gaps: int  # a bar whose seq was not the previous one + 1 on the same connection

    @property
    def reconnects(self) -> int:
        """Connections established after the first."""
        return max(self.connects - 1, 0)


@dataclass(frozen=True)
class FeedStats:
    """A consistent snapshot of a feed client's counters (taken under its lock).

    Every message read is accounted for exactly once::

        received == heartbeats + malformed_total + duplicates + shed_total
                    + delivered + queued + held

    ``unaccounted`` is the difference, always 0.
    """

    received: int  # messages (lines) read from all sources
    heartbeats: int
    delivered: int  # bars handed to the consumer
    duplicates: int  # valid bars dropped because one at or after their ts was delivered
    filled: int  # of the delivered and queued: standby bars that filled a hole of the active
    malformed: Mapping[str, int]  # invalid messages by reason (protocol.MALFORMED_REASONS)
    shed: Mapping[str, int]  # bars dropped for room, by reason (conflation.SHED_REASONS)
    queued: int  # bars waiting for the consumer
    held: int  # standby bars kept for a failover
    queue_capacity: int
    queue_high_water: int
    failovers: int  # switches to the backup
    failbacks: int  # switches to the primary
    source: str  # the active source
    sources: tuple[SourceStats, ...]

    @property
    def malformed_total(self) -> int:
        """Invalid messages, all reasons."""
        return sum(self.malformed.values())

    @property
    def shed_total(self) -> int:
        """Bars shed, all reasons."""
        return sum(self.shed.values())

    @property
    def reconnects(self) -> int:
        """Connections re-established, all sources."""
        return sum(s.reconnects for s in self.sources)

    @property
    def seq_gaps(self) -> int:
        """Sequence gaps seen, all sources."""
        return sum(s.seq_gaps for s in self.sources)

    @property
    def unaccounted(self) -> int:
        """Messages read but in no outcome: 0, unless the accounting has a bug."""
        outcomes = self.heartbeats + self.malformed_total + self.duplicates + self.shed_total
        return self.received - outcomes - self.delivered - self.queued - self.held
