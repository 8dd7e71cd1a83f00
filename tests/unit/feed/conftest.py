"""Fixtures of the feed tests: real publishers and clients on 127.0.0.1, closed at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ultrathink.feed import FeedClient, FeedConfig, FeedPublisher


@pytest.fixture
def publisher() -> Iterator[Callable[..., FeedPublisher]]:
    """Start publishers on 127.0.0.1:0 (``FeedPublisher`` keywords); all closed at the end."""
    started: list[FeedPublisher] = []

    def start(**kwargs: Any) -> FeedPublisher:
        kwargs.setdefault("heartbeat_s", None)
        pub = FeedPublisher(**kwargs).start()
        started.append(pub)
        return pub

    yield start
    for pub in started:
        pub.close()


@pytest.fixture
def client() -> Iterator[Callable[..., FeedClient]]:
    """Start clients (``FeedClient`` arguments; ``config`` keywords as ``cfg``); all closed."""
    started: list[FeedClient] = []

    def start(*urls: str, cfg: dict[str, Any] | None = None, **kwargs: Any) -> FeedClient:
        feed = FeedClient(*urls, config=FeedConfig(**(cfg or {})), **kwargs).start()
        started.append(feed)
        return feed

    yield start
    for feed in started:
        feed.close()
