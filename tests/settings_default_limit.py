"""Test settings as a project that never raised daphne's 1 MiB message limit."""

from tests.settings import *  # noqa: F401,F403

del DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE  # noqa: F821
SILENCED_SYSTEM_CHECKS = ["django_perspective.W001"]
