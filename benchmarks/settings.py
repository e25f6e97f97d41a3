"""Settings for the benchmark servers: the example project's, with only the benchmark tables."""

from example_project.settings import *  # noqa: F401,F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "example_project.demo"]  # noqa: F405
INSTALLED_APPS += ["benchmarks.bench_app"]
ROOT_URLCONF = "benchmarks.urls"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# A migrated SQLite file (``benchmarks.run`` makes one): access checks read the registry.
# Whole-table Arrow replies run to tens of MB; daphne and uvicorn are started with 1 GiB.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = 1024 * 1024 * 1024
# Every benchmark client comes from 127.0.0.1 and some workloads flood on purpose: the
# per-user connection and rate limits would measure themselves, not the transport.
PERSPECTIVE = {
    "MAX_REQUEST_SIZE": 64 * 1024 * 1024,
    "MAX_RESPONSE_SIZE": 1024 * 1024 * 1024,
    "MAX_CONNECTIONS_PER_USER": 0,
    "RATE_LIMIT": 0,
    "MAX_VIEWS": 0,
    # Off by default (it raises the peak memory of large loads): the deployment setting for
    # servers that export whole tables, as the bulk workload does.
    "RETAIN_FREED_MEMORY": 256 * 1024 * 1024,
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
