"""Production hardening primitives: breakers, rate limits, crash detector, degraded mode.

``hardening`` wraps components through small interfaces and imports only ``core`` (and the
shared exception tree in ``ultrathink.errors``). The engine wires the rate limiter, the crash
detector and the kill switch (``engine/killswitch.py``); the circuit breakers and the
degraded-mode monitor are tested on their own and not yet wired (issue #4).
"""

from ultrathink.hardening.breaker import (
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    CircuitOpenError,
)
from ultrathink.hardening.crash import CrashConfig, CrashDetector
from ultrathink.hardening.degraded import (
    DegradedConfig,
    DegradedModeMonitor,
    DegradedTransition,
    OsProcessSampler,
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
    "CrashConfig",
    "CrashDetector",
    "DegradedConfig",
    "DegradedModeMonitor",
    "DegradedTransition",
    "OrderRateLimiter",
    "OsProcessSampler",
    "RateLimitConfig",
    "RateWindow",
    "TokenBucket",
]
