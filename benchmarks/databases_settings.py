"""The database-table test settings, without the limits a benchmark would trip over.

A 10,000,000-row table takes the in-memory engine longer than one connection's engine-time
budget to load and group, and a PostgreSQL aggregate of it longer than the tests' 2 s
statement timeout.
"""

from tests.settings_databases import *  # noqa: F401,F403

PERSPECTIVE = {**PERSPECTIVE, "ENGINE_TIME_BUDGET": 0, "DATABASE_STATEMENT_TIMEOUT": 300}  # noqa: F405
