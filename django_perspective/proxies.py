"""The real client address of a connection, through the proxies the project trusts.

Behind a proxy every connection comes from the proxy's address (or, on a unix socket, from
no address at all), so per-address limits would count every visitor as one. A proxy named
in ``PERSPECTIVE["TRUSTED_PROXIES"]`` (addresses, networks, or ``"unix"`` for unix-socket
connections) is believed about who it forwards for: the forwarding header
(``PROXY_HEADER``, ``X-Forwarded-For`` by default) is read from the right, skipping
trusted proxies, and the first other address is the client. Entries further left were
written by the client itself and are ignored, so a client cannot pick its own address.
Anyone else's forwarding header is ignored.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from . import conf

logger = logging.getLogger("django_perspective.proxies")

UNIX = "unix"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_warned: set[str] = set()


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[bool, tuple[Network, ...]]:
    return UNIX in entries, tuple(ipaddress.ip_network(e, strict=False) for e in entries if e != UNIX)


def parse_networks(entries: Iterable[str]) -> tuple[bool, tuple[Network, ...]]:
    """``(unix sockets trusted, trusted networks)``; raises ValueError for a bad entry."""
    return _networks(tuple(entries))


def _trusted(address: str | None, unix: bool, networks: tuple[Network, ...]) -> bool:
    if address is None:
        return unix
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _hop(text: str) -> str | None:
    """One header entry as an address: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _header(scope: dict[str, Any], name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    values = [value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == wanted]
    return ",".join(values) if values else None


def client_address(scope: dict[str, Any]) -> str | None:
    """The address of the client a connection serves, or None when it cannot be known."""
    peer = scope.get("client")
    address = str(peer[0]) if peer else None
    unix, networks = parse_networks(conf.get("TRUSTED_PROXIES"))
    header_name = conf.get("PROXY_HEADER")
    if not _trusted(address, unix, networks):
        if address is not None and address not in _warned and _header(scope, header_name) is not None:
            _warned.add(address)
            logger.warning(
                "connections from %s carry %s, but PERSPECTIVE['TRUSTED_PROXIES'] does not name %s: "
                "if it is your proxy, every visitor behind it shares one anonymous connection quota",
                address,
                header_name,
                address,
            )
        return address
    header = _header(scope, header_name)
    if header is None:
        return address  # the proxy's own connection, or a proxy that forwards no header
    hops = header.split(",")
    for text in reversed(hops):
        hop = _hop(text)
        if hop is None:
            return None  # a trusted proxy wrote something that is no address: nobody knows
        if not _trusted(hop, False, networks):
            return hop
    return _hop(hops[0])  # every hop is a trusted proxy: the first one is the client
