"""README's "Testing your tables" example, run as a user would run it, so it never goes stale.

Each Python block in that section starts with a comment naming its file. The blocks are
written into a scratch project (the example project's settings with only the apps a
websocket needs, plus ``myapp``) and pytest runs them there in a subprocess, in
pytest-asyncio's strict mode: the marks the example shows are all it needs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import ROOT

pytestmark = pytest.mark.e2e

SECTION = "## Testing your tables"
SETTINGS = """\
from example_project.settings import *  # noqa: F401,F403

INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "django_perspective",
    "myapp",
]
ROOT_URLCONF = "readme_urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
"""


def example_files() -> dict[str, str]:
    """``{path: code}`` of the section's Python blocks, keyed by their first-line comment."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    files = {}
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.S):
        first = block.splitlines()[0]
        assert first.startswith("# ") and first.endswith(".py"), f"a block must name its file: {first!r}"
        files[first[2:]] = block
    return files


def test_the_example_names_a_table_module_and_a_test_module():
    assert sorted(example_files()) == ["myapp/perspective_tables.py", "myapp/tests/test_watchlist.py"]


def test_the_readme_testing_example_passes(tmp_path: Path):
    for name, code in example_files().items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "readme_settings.py").write_text(SETTINGS)
    (tmp_path / "readme_urls.py").write_text("urlpatterns = []\n")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nDJANGO_SETTINGS_MODULE = readme_settings\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "readme_settings",
        },
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b3 passed\b", result.stdout), result.stdout
