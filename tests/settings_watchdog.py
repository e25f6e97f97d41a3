"""Test settings with a one-second ENGINE_CALL_TIMEOUT, for the watchdog test."""

from tests.settings import *  # noqa: F401,F403

PERSPECTIVE = {**PERSPECTIVE, "ENGINE_CALL_TIMEOUT": 1}  # noqa: F405
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_perspective": {"handlers": ["console"], "level": "INFO"}},
}
