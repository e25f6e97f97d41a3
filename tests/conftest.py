from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import DaphneProcess, migrate


@pytest.fixture(autouse=True)
def _fresh_registry_rows() -> None:
    """Each test's database starts empty: rows a previous test read are not this one's."""
    from django_perspective import access

    access.forget_rows()


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated SQLite database file for server processes to share."""
    path = tmp_path_factory.mktemp("db") / "demo.sqlite3"
    env = {"DJANGO_SQLITE_PATH": str(path)}
    migrate(env)
    return env


@pytest.fixture(scope="session")
def demo_server(demo_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    """The example project under a real daphne process, shared by the session's e2e tests."""
    log = Path(tmp_path_factory.mktemp("logs")) / "daphne-demo.log"
    server = DaphneProcess(log, env=demo_db).start()
    yield server
    server.stop()
