"""Feed addresses: ``tcp://HOST:PORT``, loopback unless a remote feed is asked for."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

from ultrathink.errors import ConfigError

__all__ = ["FeedAddress", "is_loopback", "parse_feed_url", "parse_feed_urls"]


class FeedAddress(NamedTuple):
    """A feed's TCP address, from ``parse_feed_url``."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The address as ``tcp://host:port`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


_EXAMPLE = "tcp://127.0.0.1:9100"


def parse_feed_url(url: str, *, allow_remote: bool = False) -> FeedAddress:
    """Parse ``tcp://HOST:PORT`` into a ``FeedAddress``.

    Parameters
    ----------
    url : str
        ``tcp://`` with a host and a port (1-65535), nothing else.
    allow_remote : bool
        Accept a host that is not a loopback address (127.0.0.0/8, ::1, ``localhost``). The
        protocol has no authentication and no encryption, so a remote feed is refused unless
        the caller asks for it.

    Raises
    ------
    ConfigError
        Another scheme, a missing host or port, a path, query or credentials, or a remote
        host without ``allow_remote``.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"feed URL {text!r} is invalid ({exc}); use e.g. {_EXAMPLE}") from None
    if parts.scheme != "tcp":
        raise ConfigError(
            f"feed URL {text!r} must start with tcp:// (the feed is newline-delimited JSON over "
            f"TCP); use e.g. {_EXAMPLE}"
        )
    host = parts.hostname
    if not host or port is None or port == 0:
        raise ConfigError(f"feed URL {text!r} needs a host and a port (1-65535), e.g. {_EXAMPLE}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(
            f"feed URL {text!r} must be tcp://HOST:PORT only (no path, query or credentials), "
            f"e.g. {_EXAMPLE}"
        )
    if not allow_remote and not is_loopback(host):
        raise ConfigError(
            f"feed host {host!r} in {text!r} is not a loopback address: the feed protocol has no "
            "authentication or encryption, so a remote feed is refused unless allow_remote=True "
            "is given; use 127.0.0.1, ::1 or localhost, or tunnel the feed to loopback"
        )
    return FeedAddress(host, port)


def parse_feed_urls(
    spec: str | Iterable[str], *, allow_remote: bool = False
) -> tuple[FeedAddress, FeedAddress | None]:
    """Parse ``PRIMARY[,BACKUP]`` (the ``--feed`` option) into (primary, backup or None).

    Raises
    ------
    ConfigError
        No URL, more than two, the same address twice, or a URL ``parse_feed_url`` refuses.
    """
    urls = [u.strip() for u in spec.split(",")] if isinstance(spec, str) else list(spec)
    if not urls or any(not u for u in urls) or len(urls) > 2:
        raise ConfigError(
            f"--feed takes a primary URL and optionally one backup, comma-separated, was "
            f"{spec!r}; use e.g. {_EXAMPLE},tcp://127.0.0.1:9101"
        )
    addresses = [parse_feed_url(u, allow_remote=allow_remote) for u in urls]
    if len(addresses) == 2 and addresses[0] == addresses[1]:
        raise ConfigError(
            f"the backup feed {addresses[1].url} is the primary: a backup must be another "
            "publisher (another port or host)"
        )
    return addresses[0], (addresses[1] if len(addresses) == 2 else None)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
