"""Production hardening primitives: circuit breakers and order rate limits.

``hardening`` wraps components through small interfaces and imports only ``core`` (and the
shared exception tree in ``ultrathink.errors``). These primitives are tested on their own;
wiring them around the decision, market-data, execution and risk components, the kill
switch, degraded mode, operator overrides and crash-safe restart are issue #4's remaining
work.
"""

from ultrathink.hardening.breaker import (
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    CircuitOpenError,
)
from ultrathink.hardening.rate_limit import (
    RATE_LIMITED,
    OrderRateLimiter,
    RateLimitConfig,
    RateWindow,
    TokenBucket,
)

__all__ = [
    "RATE_LIMITED",
    "BreakerConfig",
    "BreakerState",
    "BreakerTransition",
    "CircuitBreaker",
    "CircuitOpenError",
    "OrderRateLimiter",
    "RateLimitConfig",
    "RateWindow",
    "TokenBucket",
]
