"""Test settings for the scheduler's end-to-end tests: clients that send as fast as they can.

The per-connection rate limit is off so a test's request rate is bounded by the engine
alone; every scheduling setting keeps its default.
"""

from tests.settings import *  # noqa: F401,F403

PERSPECTIVE = {**PERSPECTIVE, "RATE_LIMIT": 0}  # noqa: F405
