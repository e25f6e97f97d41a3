"""Test settings with small limits, so the attack suite can reach each of them."""

from tests.settings import *  # noqa: F401,F403

PERSPECTIVE = {
    **PERSPECTIVE,  # noqa: F405
    "MAX_REQUEST_SIZE": 256 * 1024,
    "RATE_LIMIT": 100,
    "RATE_BURST": 100,
    "MAX_VIEWS": 20,
    "MAX_CONNECTIONS_PER_USER": 8,
    "POLICY_CACHE_SECONDS": 0.5,
}
