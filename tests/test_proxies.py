"""The real client address behind trusted proxies (``proxies.client_address``)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_perspective.proxies import client_address


def scope(peer: str | None, **headers: str) -> dict:
    return {
        "client": [peer, 5000] if peer else None,
        "headers": [(name.replace("_", "-").lower().encode(), value.encode()) for name, value in headers.items()],
    }


TRUSTED = {"TRUSTED_PROXIES": ["10.0.0.0/8", "127.0.0.1", "unix"]}


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("10.1.1.1", "203.0.113.7", "203.0.113.7"),
        ("10.1.1.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the client's own entry is ignored
        ("10.1.1.1", "203.0.113.7, 10.2.2.2", "203.0.113.7"),  # a chain of trusted proxies is skipped
        ("10.1.1.1", "10.3.3.3, 10.2.2.2", "10.3.3.3"),  # only proxies: the first is the client
        ("10.1.1.1", "203.0.113.7:4711", "203.0.113.7"),
        ("10.1.1.1", "[2001:db8::1]:4711", "2001:db8::1"),
        ("10.1.1.1", "2001:db8::1", "2001:db8::1"),
        ("10.1.1.1", "not-an-address", None),  # a trusted proxy that wrote nonsense: unknown
        ("10.1.1.1", None, "10.1.1.1"),  # the proxy host's own connection
        (None, "203.0.113.9", "203.0.113.9"),  # a unix socket, trusted
        (None, None, None),
        ("192.0.2.50", "203.0.113.7", "192.0.2.50"),  # not a trusted proxy: its header counts for nothing
    ],
)
def test_the_forwarding_header_is_believed_only_from_trusted_proxies(peer, header, expected):
    headers = {} if header is None else {"x_forwarded_for": header}
    with override_settings(PERSPECTIVE=TRUSTED):
        assert client_address(scope(peer, **headers)) == expected


def test_without_trusted_proxies_the_peer_is_the_client():
    assert client_address(scope("127.0.0.1", x_forwarded_for="203.0.113.7")) == "127.0.0.1"
    assert client_address(scope(None, x_forwarded_for="203.0.113.7")) is None


def test_the_header_can_be_another_one():
    with override_settings(PERSPECTIVE={**TRUSTED, "PROXY_HEADER": "X-Real-IP"}):
        assert client_address(scope("127.0.0.1", x_real_ip="203.0.113.7", x_forwarded_for="198.51.100.1")) == "203.0.113.7"


def test_an_untrusted_peer_with_a_forwarding_header_is_warned_about_once(caplog):
    caplog.set_level("WARNING", logger="django_perspective.proxies")
    for _ in range(3):
        client_address(scope("192.0.2.77", x_forwarded_for="203.0.113.7"))
    assert [r.getMessage() for r in caplog.records].count(
        "connections from 192.0.2.77 carry X-Forwarded-For, but PERSPECTIVE['TRUSTED_PROXIES'] does not name "
        "192.0.2.77: if it is your proxy, every visitor behind it shares one anonymous connection quota"
    ) == 1
