"""Browser test settings with the database tables of ``tests.dbapp`` (DuckDB and PostgreSQL)."""

from tests import settings_databases
from tests.settings_browser import *  # noqa: F401,F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.dbapp"]  # noqa: F405
DATABASES = settings_databases.DATABASES
PERSPECTIVE = {**PERSPECTIVE, "DATABASE_STATEMENT_TIMEOUT": 10}  # noqa: F405
