"""Settings for the live-table and replication test servers (PostgreSQL, Redis from env)."""

import os

from example_project import settings as demo_settings
from tests.settings import *  # noqa: F401,F403

ROOT_URLCONF = "tests.liveapp.urls"
if os.environ.get("REDIS_URL"):
    # A prefix per test run: concurrent runs on one Redis never see each other's streams.
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = os.environ.get("REDIS_PREFIX", "asgi")  # noqa: F405
PERSPECTIVE = {
    **PERSPECTIVE,  # noqa: F405
    "MAX_OUTBOX_BYTES": int(os.environ.get("MAX_OUTBOX_BYTES", 64 * 1024 * 1024)),
    "MAX_CONNECTIONS_PER_USER": 0,
}
LOGGING = demo_settings.LOGGING  # the example project's: one line per record, to the console
