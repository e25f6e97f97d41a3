"""The example project as `make demo` runs it (its own settings, collectstatic, whitenoise):
the browser bundle goes out compressed, and each log line is printed once."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_perspective import finders

from .servers import ROOT, DaphneProcess, migrate

pytestmark = pytest.mark.e2e

SETTINGS = "example_project.settings"
BUNDLE = "/static/django_perspective/perspective/perspective-anywidget.js"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    tmp = tmp_path_factory.mktemp("demo")
    env = {"DJANGO_SQLITE_PATH": str(tmp / "db.sqlite3"), "DJANGO_STATIC_ROOT": str(tmp / "static")}
    migrate(env, settings=SETTINGS)
    subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": SETTINGS},
        check=True,
    )
    server = DaphneProcess(tmp / "daphne.log", env=env, settings=SETTINGS).start()
    yield server
    server.stop()


def fetch(url: str, encoding: str) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
    with urllib.request.urlopen(request, timeout=30) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def test_the_bundle_is_served_gzipped_to_browsers_that_accept_it(demo: DaphneProcess) -> None:
    original = (finders.bundle_dir() / finders.BUNDLE).read_bytes()
    served = original[: original.rindex(b"//# sourceMappingURL")].rstrip()
    headers, body = fetch(demo.http_url + BUNDLE, "gzip, deflate, br")
    assert headers.get("content-encoding") == "gzip"
    assert int(headers["content-length"]) == len(body) < 0.75 * len(original)
    assert gzip.decompress(body).rstrip() == served
    headers, body = fetch(demo.http_url + BUNDLE, "identity")
    assert "content-encoding" not in headers and body.rstrip() == served
    # The page points at the collected files, and the app's own module is compressed too.
    page = fetch(demo.http_url + "/", "identity")[1].decode()
    assert f'href="{BUNDLE}"' in page
    headers, _ = fetch(demo.http_url + "/static/django_perspective/perspective-django.js", "gzip")
    assert headers.get("content-encoding") == "gzip"


async def test_each_log_line_is_printed_once(demo: DaphneProcess) -> None:
    async with demo.connect() as conn:
        assert "superstore" in await conn.client.get_hosted_table_names()
    lines = Path(demo.log_path).read_text().splitlines()
    connects = [line for line in lines if line.endswith(" connect") or line == "connect"]
    assert len(connects) == 1, connects
    assert connects[0].split(" ", 2)[2] == "INFO django_perspective.consumers connect"
