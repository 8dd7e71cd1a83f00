"""A minimal synchronous publish/subscribe bus for the kernel thread.

Handlers run in subscription order on the publisher's thread; the kernel is single-threaded,
so there are no locks. Consumers that must not block the kernel (persistence, dashboards)
subscribe a handler that only enqueues.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[[Any], None]


class MessageBus:
    """Topic -> ordered handlers."""

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call ``handler(message)`` for every message published on ``topic``."""
        self._handlers.setdefault(topic, []).append(handler)

    def publish(self, topic: str, message: Any) -> None:
        """Deliver ``message`` to the handlers of ``topic`` (none is fine)."""
        for handler in self._handlers.get(topic, ()):
            handler(message)

    def has_subscribers(self, topic: str) -> bool:
        """True when at least one handler listens on ``topic``."""
        return bool(self._handlers.get(topic))
