"""Settings for Perspective's own test suite through ``WritableConsumer`` (tests/suiteapp).

The suite fires thousands of requests and views per connection as fast as it can: the
per-connection rate and view limits are off, everything else is the default.
"""

from tests.settings import *  # noqa: F401,F403

PERSPECTIVE = {
    **PERSPECTIVE,  # noqa: F405
    "RATE_LIMIT": 0,
    "MAX_VIEWS": 0,
    "MAX_CONNECTIONS_PER_USER": 0,
}
