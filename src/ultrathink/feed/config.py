"""``FeedConfig``: the live feed client's settings (queue, health, failover, reconnects)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ultrathink.feed.protocol import MAX_LINE_BYTES

__all__ = ["FEED_READERS", "FeedConfig", "FeedReader"]

#: where a paper session reads its feed: on the kernel's thread (``FeedClient(threaded=
#: False)``), or in a child process (``feed.process.FeedProcess``)
FeedReader = Literal["inline", "process"]
FEED_READERS: tuple[str, ...] = get_args(FeedReader)


class FeedConfig(BaseModel):
    """Settings of a ``FeedClient``; each field's ``description`` says what it does.

    A source is *healthy* while it is connected, has sent a valid message (a bar, even one
    already delivered by the other feed, or a heartbeat) within ``stall_s``, and has sent at
    most ``max_bad`` invalid messages within ``bad_window_s``. The client switches from an
    unhealthy active source to a healthy other one at once, and back to the primary once the
    primary has been healthy for ``failback_s`` (docs/feed.md).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    queue_size: int = Field(
        default=10_000, ge=1, le=10_000_000, description="bars waiting for the consumer, at most"
    )
    stall_s: float = Field(
        default=5.0, gt=0, description="a source silent (no bar, no heartbeat) this long stalls"
    )
    failback_s: float = Field(
        default=30.0, ge=0, description="the primary must be healthy this long to fail back"
    )
    max_bad: int = Field(
        default=10, ge=0, description="more invalid messages than this in bad_window_s: unhealthy"
    )
    bad_window_s: float = Field(default=10.0, gt=0, description="the window of max_bad, seconds")
    standby_buffer: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="bars kept from the standby source, ahead of what was delivered, for a "
        "failover without a gap",
    )
    backoff_initial_s: float = Field(
        default=0.05, gt=0, description="first reconnect delay; doubles per failed attempt"
    )
    backoff_max_s: float = Field(default=2.0, gt=0, description="reconnect delay cap")
    connect_timeout_s: float = Field(default=2.0, gt=0, description="one connect attempt, at most")
    max_line_bytes: int = Field(
        default=MAX_LINE_BYTES,
        ge=256,
        le=16 * 1024 * 1024,
        description="longer lines are dropped unread (line_too_long)",
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> FeedConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) must be >= backoff_initial_s "
                f"({self.backoff_initial_s}): the cap would be below the first delay"
            )
        return self

    def backoff_s(self, attempt: int) -> float:
        """The delay before reconnect attempt ``attempt`` (0-based): capped doubling, no jitter.

        No jitter: one session has one client per feed, so there is no herd to spread, and a
        deterministic schedule keeps tests and replays repeatable.
        """
        return min(self.backoff_initial_s * 2.0 ** min(attempt, 60), self.backoff_max_s)
