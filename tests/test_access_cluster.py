"""Two daphne processes on PostgreSQL and Redis: an unpublish or an access change made in
one process cuts the open viewers of the other within ``POLICY_CACHE_SECONDS``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import perspective
import pytest

from .servers import AdminBrowser, DaphneProcess, connect, make_user
from .services import postgres_database, redis_prefix
from .test_access import MARGIN, ROW, SETTINGS, TTL, django, refused

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    media = tmp_path_factory.mktemp("cluster-media")
    with postgres_database(SETTINGS) as database, redis_prefix() as redis:
        yield {**database, **redis, "DJANGO_MEDIA_ROOT": str(media), "E2E_ACCESS_TABLES": "1"}


@pytest.fixture(scope="module")
def cluster(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaphneProcess, DaphneProcess]]:
    logs = Path(tmp_path_factory.mktemp("cluster-logs"))
    # Published before the processes start: each hosts them when its engine starts.
    for name in ("shared", "shared-access"):
        django(env, f"NAME = {name!r}\n{ROW}\nPublishedTable.objects.filter(pk=row.pk).update(published=True)")
    a = DaphneProcess(logs / "a.log", env=env, settings=SETTINGS).start()
    b = DaphneProcess(logs / "b.log", env=env, settings=SETTINGS).start()
    yield a, b
    a.stop()
    b.stop()


async def test_an_unpublish_in_one_process_cuts_the_viewers_of_another(cluster, env):
    a, b = cluster
    admin = AdminBrowser(a.http_url, make_user(env, "cluster-admin", superuser=True, settings=SETTINGS))
    pk = int(django(env, "from django_perspective.models import PublishedTable\nprint(PublishedTable.objects.get(name='shared').pk)"))
    async with connect(a.ws_url) as on_a, connect(b.ws_url) as on_b:
        view_a = await (await on_a.client.open_table("shared")).view()
        view_b = await (await on_b.client.open_table("shared")).view()
        for view in (view_a, view_b):
            assert await view.to_columns() == {"id": [1, 2], "city": ["Paris", "Rome"]}

        assert admin.action("unpublish_tables", pk) == ['"shared": unpublished.']
        with pytest.raises(perspective.PerspectiveError, match="Unknown table 'shared'"):
            await view_a.to_columns()  # the process that unpublished: at once
        elapsed, error = await refused(view_b.to_columns)
        assert "Unknown table 'shared'" in error
        assert elapsed <= TTL + MARGIN
        with pytest.raises(perspective.PerspectiveError, match='Unknown table "shared"'):
            await on_b.client.open_table("shared")


async def test_an_access_change_made_elsewhere_cuts_the_viewers_of_every_process(cluster, env):
    a, b = cluster
    async with connect(a.ws_url) as on_a, connect(b.ws_url) as on_b:
        views = [await (await conn.client.open_table("shared-access")).view() for conn in (on_a, on_b)]
        for view in views:
            assert (await view.to_columns())["city"] == ["Paris", "Rome"]
        # Saved by a third process (a shell, a worker): neither server hears of it but through the database.
        django(env, "from django_perspective.models import PublishedTable\nPublishedTable.objects.filter(name='shared-access').update(access='staff')")
        for view in views:
            elapsed, error = await refused(view.to_columns)
            assert "Unknown table 'shared-access'" in error
            assert elapsed <= TTL + MARGIN
