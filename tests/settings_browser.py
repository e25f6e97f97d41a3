"""Test settings plus a test-only app hosting a table with a hostile name."""

from tests.settings import *  # noqa: F401,F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.browserapp"]  # noqa: F405
ROOT_URLCONF = "tests.browserapp.urls"
