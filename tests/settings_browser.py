"""Test settings plus a test-only app hosting a table with a hostile name."""

from tests.settings import *  # noqa: F401,F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.browserapp"]  # noqa: F405
ROOT_URLCONF = "tests.browserapp.urls"
# Access changes reach open connections quickly (the edit-refusal test closes a table).
PERSPECTIVE = {**PERSPECTIVE, "POLICY_CACHE_SECONDS": 0.5}  # noqa: F405
