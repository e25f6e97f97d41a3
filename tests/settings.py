"""Test settings: the example project's, with a fast password hasher."""

from example_project.settings import *  # noqa: F401,F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.e2eapp", "tests.liveapp"]  # noqa: F405
ROOT_URLCONF = "tests.urls"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}

# The tests serve the finders' files (staticfiles_urlpatterns, as in development): nothing
# is collected, and hashed names would need a manifest. The compressed bundle has its own
# test, on the example project's settings with a collected STATIC_ROOT.
STATIC_ROOT = None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
