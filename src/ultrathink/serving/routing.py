"""Request routing for ``ultrathink serve``: which model version answers a request.

A :class:`Routing` holds the A/B weights (percent, summing to 100), an optional shadow version
(called on every request, never answers) and an optional canary (a small share of *all*
traffic, judged by a :class:`CanaryPolicy` and rolled back with :meth:`Routing.without_canary`).

Routing is sticky and deterministic: a request's key (e.g. a symbol) is hashed with BLAKE2b
(8-byte digest, read as a big-endian uint64) to ``u`` in ``[0, 1)``, and ``u`` falls into one
segment of the cumulative effective weights: the canary first, then the A/B versions in their
given order. The same key always gets the same version for the same routing, in every worker
process and across restarts (Python's ``hash()`` is salted per process, so it is not used).
A request without a key is routed by the hash of its sequence number instead.

Changing the routing (adding or removing a canary, new weights) moves the segment edges, so a
key may change version then; it never changes while the routing is the same.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ultrathink.errors import ConfigError

#: The alias a version list may use for the registry's production version.
PRODUCTION = "production"

_VERSION = re.compile(r"v[0-9]{4,}")
_TWO_64 = float(2**64)
_CANARY_LIMITS = ("max_error_rate", "max_p99_ms", "min_requests")


def _is_version(name: object) -> bool:
    return isinstance(name, str) and (name == PRODUCTION or _VERSION.fullmatch(name) is not None)


def _check_version(name: object, what: str) -> str:
    if not _is_version(name):
        raise ConfigError(
            f"{what} must be a registry version like v0001 or the word 'production', "
            f"got {name!r}; pass e.g. v0002"
        )
    return str(name)


def parse_ab(text: str) -> dict[str, int]:
    """Parse ``--ab`` weights: ``"v0001=90,v0002=10"`` -> ``{"v0001": 90, "v0002": 10}``.

    Parameters
    ----------
    text : str
        Comma-separated ``VERSION=WEIGHT`` parts; a version is ``v`` and at least four digits,
        or ``production``; weights are non-negative integers (percent) adding up to 100.

    Returns
    -------
    dict of str to int
        The weights in the order given.

    Raises
    ------
    ConfigError
        On empty text, a malformed part, a bad version, a non-integer or negative weight, a
        duplicate version, or weights not adding up to 100; the message names the part.
    """
    hint = "pass e.g. --ab v0001=90,v0002=10"
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"--ab needs VERSION=WEIGHT parts, got {text!r}; {hint}")
    weights: dict[str, int] = {}
    for raw in text.split(","):
        part = raw.strip()
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not name or not value:
            raise ConfigError(f"--ab part {part!r} is not VERSION=WEIGHT (in {text!r}); {hint}")
        if not _is_version(name):
            raise ConfigError(
                f"--ab part {part!r} names no version: {name!r} is not v0001-style "
                f"or 'production' (in {text!r}); {hint}"
            )
        if not value.isascii() or not value.isdigit():
            raise ConfigError(
                f"--ab part {part!r} needs a whole, non-negative percent weight, got {value!r} "
                f"(in {text!r}); {hint}"
            )
        if name in weights:
            raise ConfigError(f"--ab names version {name!r} twice (in {text!r}); {hint}")
        weights[name] = int(value)
    total = sum(weights.values())
    if total != 100:
        raise ConfigError(f"--ab weights must add up to 100, got {total} ({text}); {hint}")
    return weights


def parse_canary(text: str) -> tuple[str, float]:
    """Parse ``--canary``: ``"v0002:5"`` -> ``("v0002", 5.0)``.

    Parameters
    ----------
    text : str
        ``VERSION:PERCENT`` with the percent of all traffic in (0, 50].

    Returns
    -------
    tuple of (str, float)
        The canary version and its share of traffic in percent.

    Raises
    ------
    ConfigError
        On malformed text, a bad version or a percent outside (0, 50].
    """
    hint = "pass e.g. --canary v0002:5"
    if not isinstance(text, str) or text.count(":") != 1:
        raise ConfigError(f"--canary must be VERSION:PERCENT, got {text!r}; {hint}")
    name, value = (s.strip() for s in text.split(":"))
    if not _is_version(name):
        raise ConfigError(
            f"--canary version {name!r} is not v0001-style or 'production' (in {text!r}); {hint}"
        )
    try:
        pct = float(value)
    except ValueError:
        raise ConfigError(
            f"--canary percent {value!r} is not a number (in {text!r}); {hint}"
        ) from None
    if not (math.isfinite(pct) and 0.0 < pct <= 50.0):
        raise ConfigError(
            f"--canary percent must be in (0, 50], got {value!r} (in {text!r}); {hint}"
        )
    return name, pct


@dataclass(frozen=True)
class CanaryPolicy:
    """A canary version, its share of traffic and the limits that roll it back.

    Attributes
    ----------
    version : str
        The canary's registry version.
    pct : float
        Percent of *all* traffic the canary answers, in (0, 50].
    max_error_rate : float
        Largest tolerated ``errors / requests`` of the canary, in [0, 1].
    max_p99_ms : float
        Largest tolerated latency p99 of the canary, in milliseconds (> 0).
    min_requests : int
        The canary is judged only once it has answered this many requests (>= 1).

    Raises
    ------
    ConfigError
        If a field is out of range.
    """

    version: str
    pct: float
    max_error_rate: float = 0.02
    max_p99_ms: float = 50.0
    min_requests: int = 50

    def __post_init__(self) -> None:
        _check_version(self.version, "canary version")
        pct = self.pct
        if isinstance(pct, bool) or not isinstance(pct, int | float):
            raise ConfigError(f"canary pct must be a number in (0, 50], got {pct!r}; pass e.g. 5")
        if not (math.isfinite(pct) and 0.0 < pct <= 50.0):
            raise ConfigError(f"canary pct must be in (0, 50], got {pct!r}; pass e.g. 5")
        object.__setattr__(self, "pct", float(pct))
        rate = self.max_error_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise ConfigError(
                f"canary max_error_rate must be a fraction in [0, 1], got {rate!r}; "
                "pass e.g. 0.02 for 2 %"
            )
        p99 = self.max_p99_ms
        if (
            isinstance(p99, bool)
            or not isinstance(p99, int | float)
            or not (math.isfinite(p99) and p99 > 0)
        ):
            raise ConfigError(
                f"canary max_p99_ms must be a finite number of milliseconds > 0, got {p99!r}; "
                "pass e.g. 50.0"
            )
        n = self.min_requests
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(
                f"canary min_requests must be an integer >= 1, got {n!r}; pass e.g. 50"
            )

    def breach(self, requests: int, errors: int, p99_ms: float) -> str | None:
        """Say why the canary must be rolled back, or None while it is within its limits.

        Parameters
        ----------
        requests : int
            Requests the canary answered (errors included).
        errors : int
            Requests of the canary that failed.
        p99_ms : float
            The canary's latency p99 in milliseconds.

        Returns
        -------
        str or None
            None below ``min_requests`` or within the limits; otherwise the reason, e.g.
            ``"canary v0002 error rate 3.00% > 2.00% over 100 requests"`` (both limits, joined
            by ``"; "``, when both are broken).
        """
        if requests < self.min_requests or requests <= 0:
            return None
        reasons = []
        rate = errors / requests
        if rate > self.max_error_rate:
            reasons.append(
                f"canary {self.version} error rate {rate:.2%} > {self.max_error_rate:.2%} "
                f"over {requests} requests"
            )
        if p99_ms > self.max_p99_ms:
            reasons.append(
                f"canary {self.version} latency p99 {p99_ms:.4g} ms > {self.max_p99_ms:g} ms "
                f"over {requests} requests"
            )
        return "; ".join(reasons) or None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "version": self.version,
            "pct": self.pct,
            "max_error_rate": self.max_error_rate,
            "max_p99_ms": self.max_p99_ms,
            "min_requests": self.min_requests,
        }


def _unit_interval(text: str) -> float:
    # stable across processes and runs: BLAKE2b, never the salted built-in hash()
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_64


def key_unit(key: str | None, seq: int) -> float:
    """The routing draw ``u`` in [0, 1) of a request: the hash of its key, else of ``seq``.

    An empty key counts as no key.
    """
    return _unit_interval(key if key else str(seq))


@dataclass(frozen=True)
class Routing:
    """Which versions answer, in which shares, plus an optional shadow and canary.

    Build it with :meth:`build` (from CLI options) or :meth:`from_dict` (from another worker).

    Attributes
    ----------
    primary : str
        The version that gets the rest of the traffic: the one with the largest A/B weight.
    weights : dict of str to int
        A/B weights in percent, summing to 100, including ``primary`` (``{primary: 100}``
        without A/B). With a canary they split the traffic the canary does not take.
    shadow : str or None
        A version called alongside every request whose answer is only recorded.
    canary : CanaryPolicy or None
        A version answering ``canary.pct`` percent of all traffic.

    Raises
    ------
    ConfigError
        If the weights are invalid, ``primary`` has no positive weight, the shadow serves
        traffic, or the canary is an A/B version or the shadow.
    """

    primary: str
    weights: dict[str, int]
    shadow: str | None = None
    canary: CanaryPolicy | None = None
    # precomputed for choose(): segment versions and the inner segment edges
    _segments: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _edges: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.weights, dict) or not self.weights:
            raise ConfigError(
                f"routing weights must be a non-empty dict of version to percent, "
                f"got {self.weights!r}; pass e.g. {{'v0001': 100}}"
            )
        weights = dict(self.weights)  # a private copy: the edges below must stay in step
        for name, weight in weights.items():
            _check_version(name, "routing weight version")
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise ConfigError(
                    f"routing weight of {name} must be a whole percent >= 0, got {weight!r}; "
                    "pass e.g. 90"
                )
        total = sum(weights.values())
        if total != 100:
            raise ConfigError(
                f"routing weights must add up to 100, got {total} ({_format_weights(weights)}); "
                "pass e.g. v0001=90,v0002=10"
            )
        _check_version(self.primary, "routing primary")
        if weights.get(self.primary, 0) <= 0:
            raise ConfigError(
                f"routing primary {self.primary} must have a weight > 0, weights are "
                f"{_format_weights(weights)}; pass a primary among the weighted versions"
            )
        if self.shadow is not None:
            _check_version(self.shadow, "shadow version")
            if self.shadow in weights:
                raise ConfigError(
                    f"shadow {self.shadow} also serves traffic ({_format_weights(weights)}); "
                    "pass a shadow version that is not in --ab and is not the primary"
                )
        canary = self.canary
        if canary is not None:
            if not isinstance(canary, CanaryPolicy):
                raise ConfigError(
                    f"routing canary must be a CanaryPolicy, got {canary!r}; "
                    "pass CanaryPolicy(version, pct) or None"
                )
            if canary.version in weights:
                raise ConfigError(
                    f"canary {canary.version} already serves traffic "
                    f"({_format_weights(weights)}); pass a canary version not in --ab "
                    "and not the primary"
                )
            if canary.version == self.shadow:
                raise ConfigError(
                    f"canary {canary.version} is also the shadow; "
                    "pass different versions to --canary and --shadow"
                )
        object.__setattr__(self, "weights", weights)
        shares = self.effective_weights()
        segments = tuple(shares)
        cumulative, edges = 0.0, []
        for name in segments[:-1]:
            cumulative += shares[name] / 100.0
            edges.append(cumulative)
        object.__setattr__(self, "_segments", segments)
        object.__setattr__(self, "_edges", tuple(edges))

    @classmethod
    def build(
        cls,
        primary: str,
        ab: dict[str, int] | None,
        shadow: str | None,
        canary: tuple[str, float] | None,
        **canary_limits: Any,
    ) -> Routing:
        """Build the routing from the ``serve`` options.

        Parameters
        ----------
        primary : str
            The version serving everything when there is no A/B split (ignored with ``ab``:
            the primary is then the A/B version with the largest weight, the first on ties).
        ab : dict of str to int or None
            A/B weights, as from :func:`parse_ab`.
        shadow : str or None
            The shadow version; it may not serve traffic.
        canary : tuple of (str, float) or None
            ``(version, pct)``, as from :func:`parse_canary`; it may be neither an A/B
            version nor the shadow. It takes ``pct`` percent of all traffic, the rest is split
            by the weights.
        **canary_limits
            ``max_error_rate``, ``max_p99_ms`` and/or ``min_requests`` of the
            :class:`CanaryPolicy` (ignored without a canary).

        Returns
        -------
        Routing

        Raises
        ------
        ConfigError
            On any invalid or conflicting option, or an unknown canary limit.
        """
        unknown = sorted(set(canary_limits) - set(_CANARY_LIMITS))
        if unknown:
            raise ConfigError(
                f"unknown canary limit(s) {', '.join(unknown)}; "
                f"pass only {', '.join(_CANARY_LIMITS)}"
            )
        if ab is not None:
            if not isinstance(ab, dict) or not ab:
                raise ConfigError(
                    f"--ab weights must be a non-empty dict, got {ab!r}; "
                    "pass e.g. parse_ab('v0001=90,v0002=10')"
                )
            weights = dict(ab)
            primary = max(weights, key=lambda name: weights[name])  # first on ties
        else:
            _check_version(primary, "primary version")
            weights = {primary: 100}
        policy = None
        if canary is not None:
            if not isinstance(canary, tuple) or len(canary) != 2:
                raise ConfigError(
                    f"canary must be a (version, pct) pair, got {canary!r}; "
                    "pass e.g. parse_canary('v0002:5')"
                )
            policy = CanaryPolicy(canary[0], canary[1], **canary_limits)
        return cls(primary=primary, weights=weights, shadow=shadow, canary=policy)

    def versions(self) -> list[str]:
        """Every version to load: the weighted ones (even at 0 %), the canary, the shadow."""
        names = list(self.weights)
        if self.canary is not None:
            names.append(self.canary.version)
        if self.shadow is not None:
            names.append(self.shadow)
        return list(dict.fromkeys(names))

    def effective_weights(self) -> dict[str, float]:
        """The percent of all traffic each answering version gets, the canary first.

        Versions with a zero weight answer nothing and are left out; the values sum to 100.
        """
        out: dict[str, float] = {}
        rest = 100.0
        if self.canary is not None:
            out[self.canary.version] = self.canary.pct
            rest -= self.canary.pct
        for name, weight in self.weights.items():
            if weight > 0:
                out[name] = weight * rest / 100.0
        return out

    def choose(self, key: str | None, seq: int) -> str:
        """The version that answers a request.

        Parameters
        ----------
        key : str or None
            The request's routing key (e.g. a symbol); the same key always gets the same
            version for the same routing. None or empty: route by ``seq`` instead.
        seq : int
            The request's sequence number, used only without a key.

        Returns
        -------
        str
            The answering version.
        """
        segments = self._segments
        if len(segments) == 1:
            return segments[0]
        digest = hashlib.blake2b((key if key else str(seq)).encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / _TWO_64
        return segments[bisect.bisect_right(self._edges, u)]

    def without_canary(self) -> Routing:
        """The routing with the canary removed: the rollback target."""
        if self.canary is None:
            return self
        return Routing(primary=self.primary, weights=self.weights, shadow=self.shadow)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; :meth:`from_dict` restores an equal routing."""
        return {
            "primary": self.primary,
            "weights": dict(self.weights),
            "shadow": self.shadow,
            "canary": None if self.canary is None else self.canary.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Routing:
        """Rebuild a routing from :meth:`to_dict` output (e.g. after a JSON round trip).

        Raises
        ------
        ConfigError
            If keys are missing or unknown, or the contents are invalid.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"routing must be a dict from Routing.to_dict, got {d!r}")
        expected = {"primary", "weights", "shadow", "canary"}
        if set(d) != expected:
            raise ConfigError(
                f"routing dict keys must be {sorted(expected)}, got {sorted(d)}; "
                "pass the output of Routing.to_dict"
            )
        canary = d["canary"]
        policy = None
        if canary is not None:
            fields = {"version", "pct", *_CANARY_LIMITS}
            if not isinstance(canary, dict) or set(canary) != fields:
                raise ConfigError(
                    f"routing canary must be a dict with keys {sorted(fields)}, got {canary!r}; "
                    "pass the output of Routing.to_dict"
                )
            policy = CanaryPolicy(**canary)
        weights = d["weights"]
        if not isinstance(weights, dict):
            raise ConfigError(
                f"routing weights must be a dict of version to percent, got {weights!r}; "
                "pass the output of Routing.to_dict"
            )
        return cls(primary=d["primary"], weights=dict(weights), shadow=d["shadow"], canary=policy)


def _format_weights(weights: dict[str, int]) -> str:
    return ",".join(f"{name}={weight}" for name, weight in weights.items())
