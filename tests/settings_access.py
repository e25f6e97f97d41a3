"""Settings for the access tests: a one-second policy cache, small quotas, trusted proxies.

With ``POSTGRES_DB`` and ``REDIS_URL`` set (the example project reads them) two processes
share the database and Redis.
"""

import os

from tests.settings import *  # noqa: F401,F403

if os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = os.environ.get("REDIS_PREFIX", "asgi")  # noqa: F405
PERSPECTIVE = {
    **PERSPECTIVE,  # noqa: F405
    "POLICY_CACHE_SECONDS": 1,
    "MAX_CONNECTIONS_PER_USER": 4,
    "TRUSTED_PROXIES": ["127.0.0.1", "unix"],
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_perspective": {"handlers": ["console"], "level": "INFO"}},
}
