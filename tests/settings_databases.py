"""Test settings for database tables: the test app that declares them, a short statement timeout."""

from tests.settings import *  # noqa: F401,F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.dbapp"]  # noqa: F405
PERSPECTIVE = {
    **PERSPECTIVE,  # noqa: F405
    "DATABASE_STATEMENT_TIMEOUT": 2,
    "DATABASE_MAX_ROWS": 100_000,
}
# The statement log the injection test reads: every SQL statement the server sends.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"sql": {"format": "SQL> %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "sql"}},
    "loggers": {"django_perspective.databases.sql": {"handlers": ["console"], "level": "DEBUG", "propagate": False}},
}
