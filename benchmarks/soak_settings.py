"""The demo project plus the soak table."""

from example_project.settings import *  # noqa: F401,F403

INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks.soakapp"]  # noqa: F405
LOGGING = {"version": 1, "disable_existing_loggers": False}
