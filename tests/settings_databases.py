"""Test settings for database tables: the test app that declares them, a short statement timeout.

With ``DB_PG_NAME`` set, a PostgreSQL alias ``warehouse`` holds the PostgreSQL tables
(the registry itself stays on the default database).
"""

import os

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

if os.environ.get("DB_PG_NAME"):
    DATABASES = {  # noqa: F405
        **DATABASES,  # noqa: F405
        "warehouse": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["DB_PG_NAME"],
            "HOST": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
            "PORT": os.environ.get("POSTGRES_PORT", "5432"),
            "USER": os.environ.get("POSTGRES_USER", "postgres"),
        },
    }
