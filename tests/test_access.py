"""Access over a connection's whole life, against a real daphne process.

Users sign in with session cookies (rows in the server's database) or signed tokens; the
test changes the database the way an admin or a logout would and checks that the open
connection loses access within ``POLICY_CACHE_SECONDS`` plus a small margin, with the
documented close code (4440) or the error a missing table gets. Unpublishing through the
real admin deletes every view on the table at once, so it can be published again whatever
its viewers did. Anonymous quotas behind a trusted proxy count real addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import perspective
import pytest

from django_perspective.client import Connection

from .servers import AdminBrowser, DaphneProcess, connect, make_user, migrate, run_django

pytestmark = pytest.mark.e2e

SETTINGS = "tests.settings_access"
TTL = 1.0  # POLICY_CACHE_SECONDS in tests.settings_access
MARGIN = 1.5  # the re-check itself, a database round trip, a loaded machine
CLOSE_SIGNED_OUT = 4440
PRELUDE = "from django.contrib.auth.models import Permission, User\nfrom django.contrib.sessions.models import Session\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("access")
    values = {
        "DJANGO_SQLITE_PATH": str(root / "db.sqlite3"),
        "DJANGO_MEDIA_ROOT": str(root / "media"),
        "E2E_ACCESS_TABLES": "1",
    }
    migrate(values, settings=SETTINGS)
    return values


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    sockets = Path(tempfile.mkdtemp(prefix="dp-"))  # a unix socket path must stay short
    log = Path(tmp_path_factory.mktemp("access-logs")) / "daphne.log"
    process = DaphneProcess(log, env=env, settings=SETTINGS, unix_socket=sockets / "daphne.sock").start()
    yield process
    process.stop()
    shutil.rmtree(sockets, ignore_errors=True)


def django(env: dict[str, str], script: str) -> str:
    return run_django(env, PRELUDE + script, SETTINGS)


def cookie(session_key: str) -> dict[str, str]:
    return {"Cookie": f"sessionid={session_key}"}


def views_free(server: DaphneProcess, table: str) -> bool:
    """No view holds ``table`` in the server's engine (the probe re-hosts it afterwards)."""
    with urllib.request.urlopen(f"{server.http_url}/e2e/views-free/{table}/", timeout=30) as response:
        return json.loads(response.read())["free"]


async def refused(call: Callable[[], Awaitable[Any]], timeout: float = TTL + MARGIN) -> tuple[float, str]:
    """Repeat ``call()`` until it fails; how long that took and the error (fails the test after ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout + 5:
        try:
            await asyncio.wait_for(call(), 5)
        except perspective.PerspectiveError as exc:
            return time.monotonic() - start, str(exc)
        await asyncio.sleep(0.05)
    raise AssertionError(f"still answering {timeout + 5:.1f}s later")


async def closed(conn: Connection) -> tuple[float, int | None]:
    start = time.monotonic()
    await asyncio.wait_for(conn.ws.wait_closed(), TTL + MARGIN + 5)
    return time.monotonic() - start, conn.ws.close_code


GONE = {
    "deactivated": "User.objects.filter(username=NAME).update(is_active=False)",
    "deleted": "User.objects.filter(username=NAME).delete()",
    "logged out": "Session.objects.filter(session_key=KEY).delete()",
    "password changed": "user = User.objects.get(username=NAME)\nuser.set_password('changed')\nuser.save()",
}


@pytest.mark.parametrize("change", GONE)
async def test_a_user_who_is_gone_is_closed_out_and_its_session_freed(server, env, change):
    name = f"gone-{change.replace(' ', '-')}"
    key = make_user(env, name, staff=True, settings=SETTINGS)
    async with connect(server.ws_url, headers=cookie(key)) as conn:
        view = await (await conn.client.open_table("staff_only")).view()
        assert (await view.to_columns())["id"] == [1, 2, 3]
        django(env, f"NAME, KEY = {name!r}, {key!r}\n{GONE[change]}")
        elapsed, code = await closed(conn)
    assert code == CLOSE_SIGNED_OUT
    assert elapsed <= TTL + MARGIN
    assert views_free(server, "staff_only")  # the Perspective session closed with its view
    async with connect(server.ws_url, headers=cookie(key)) as again:  # the cookie signs nobody in now
        with pytest.raises(perspective.PerspectiveError, match='Unknown table "staff_only"'):
            await again.client.open_table("staff_only")


LOST = {
    "staff flag": ({"staff": True}, "staff_only", "User.objects.filter(username=NAME).update(is_staff=False)"),
    "group": ({"groups": ("feeders",)}, "group_feed", "User.objects.get(username=NAME).groups.clear()"),
    "permission": ({}, "perm_feed", "User.objects.get(username=NAME).user_permissions.clear()"),
}
GRANT = "User.objects.get(username=NAME).user_permissions.add(Permission.objects.get(content_type__app_label='auth', codename='view_group'))"


@pytest.mark.parametrize("change", LOST)
async def test_access_lost_on_an_open_connection_deletes_its_views(server, env, change):
    kwargs, table, script = LOST[change]
    name = f"lost-{change.replace(' ', '-')}"
    key = make_user(env, name, settings=SETTINGS, **kwargs)
    django(env, f"NAME = {name!r}\n{GRANT}")
    async with connect(server.ws_url, headers=cookie(key)) as conn:
        view = await (await conn.client.open_table(table)).view()
        assert (await view.to_columns())["id"] == [1, 2, 3]
        assert not views_free(server, table)
        django(env, f"NAME = {name!r}\n{script}")
        elapsed, error = await refused(view.to_columns)
        assert f"Unknown table '{table}'" in error
        assert elapsed <= TTL + MARGIN
        assert views_free(server, table)  # deleted in the engine, the connection still open
        for hidden in (table, "staff_spare"):  # including tables it never asked for
            with pytest.raises(perspective.PerspectiveError, match=f'Unknown table "{hidden}"'):
                await conn.client.open_table(hidden)
        assert table not in await conn.client.get_hosted_table_names()
        assert await (await conn.client.open_table("superstore")).size() == 100_000


async def test_a_revoked_view_gets_no_more_updates(server, env):
    reader = make_user(env, "feed-reader", groups=("feeders",), settings=SETTINGS)
    writer = make_user(env, "feed-writer", staff=True, groups=("feeders",), settings=SETTINGS)
    async with connect(server.ws_url, headers=cookie(reader)) as conn, connect(server.ws_url, headers=cookie(writer)) as w:
        updates: list[int] = []
        view = await (await conn.client.open_table("group_feed")).view()
        await view.on_update(lambda *args: updates.append(1))
        feed = await w.client.open_table("group_feed")
        await feed.update([{"id": 1, "value": 11.0}])
        for _ in range(100):
            if updates:
                break
            await asyncio.sleep(0.05)
        assert updates, "the view never got the first update"
        django(env, "User.objects.get(username='feed-reader').groups.clear()")
        _, error = await refused(view.to_columns)
        assert "Unknown table 'group_feed'" in error
        seen = len(updates)
        await feed.update([{"id": 2, "value": 22.0}])
        writer_view = await feed.view()
        for _ in range(100):
            if (await writer_view.to_columns())["value"][1] == 22.0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # many poll intervals: a live subscription would have fired
        assert len(updates) == seen
        await feed.update([{"id": 1, "value": 10.0}, {"id": 2, "value": 20.0}])


async def test_a_token_lasts_only_while_its_user_is_active(server, env):
    token = django(
        env,
        "from django_perspective.tokens import make_token\n"
        "print(make_token(['staff_only'], User.objects.create_user('token-user')))",
    )
    async with connect(server.ws_url, token=token) as conn:
        view = await (await conn.client.open_table("staff_only")).view()
        assert (await view.to_columns())["id"] == [1, 2, 3]
        django(env, "User.objects.filter(username='token-user').update(is_active=False)")
        elapsed, code = await closed(conn)
    assert code == CLOSE_SIGNED_OUT
    assert elapsed <= TTL + MARGIN
    async with connect(server.ws_url, token=token) as again:
        await asyncio.wait_for(again.ws.wait_closed(), 10)
        assert again.ws.close_code == 4401


async def test_a_token_made_for_nobody_keeps_its_grant_until_it_expires(server, env):
    token = django(env, "from django_perspective.tokens import make_token\nprint(make_token(['staff_only']))")
    async with connect(server.ws_url, token=token) as conn:
        view = await (await conn.client.open_table("staff_only")).view()
        await asyncio.sleep(TTL + MARGIN)  # re-checked at least once: nobody to lose
        assert (await view.to_columns())["id"] == [1, 2, 3]
        assert conn.ws.close_code is None


ROW = """
from django.core.files.base import ContentFile
from django_perspective.models import PublishedTable
row = PublishedTable(name=NAME, source="file", access="public")
row.file.save(NAME + ".csv", ContentFile(b"id,city\\n1,Paris\\n2,Rome\\n"), save=False)
row.save()
print(row.pk)
"""


async def test_unpublishing_frees_the_table_at_once_whatever_its_viewers_do(server, env):
    admin = AdminBrowser(server.http_url, make_user(env, "publisher", superuser=True, settings=SETTINGS))
    pk = int(django(env, f"NAME = 'tiny2'\n{ROW}"))
    assert admin.action("publish_tables", pk) == ['"tiny2": published, 2 rows.']
    async with connect(server.ws_url) as viewer:
        listings: list[int] = []
        await viewer.client.on_hosted_tables_update(lambda *args: listings.append(1))  # as the viewer does
        view = await (await viewer.client.open_table("tiny2")).view()
        assert await view.to_columns() == {"id": [1, 2], "city": ["Paris", "Rome"]}

        assert admin.action("unpublish_tables", pk) == ['"tiny2": unpublished.']
        with pytest.raises(perspective.PerspectiveError, match="Unknown table 'tiny2'"):
            await view.to_columns()  # deleted at once, not at the next re-check
        assert admin.action("publish_tables", pk) == ['"tiny2": published, 2 rows.']  # the viewer still connected
        view = await (await viewer.client.open_table("tiny2")).view(columns=["city"])
        assert await view.to_columns() == {"city": ["Paris", "Rome"]}

        # The sequence from the report: unpublish, the viewer changes its view, then closes.
        assert admin.action("unpublish_tables", pk) == ['"tiny2": unpublished.']
        with pytest.raises(perspective.PerspectiveError, match="Unknown table 'tiny2'"):
            await view.delete()
        with pytest.raises(perspective.PerspectiveError, match='Unknown table "tiny2"'):
            await viewer.client.open_table("tiny2")
    assert admin.action("publish_tables", pk) == ['"tiny2": published, 2 rows.']
    async with connect(server.ws_url) as later:
        assert await (await later.client.open_table("tiny2")).size() == 2
    assert "already exists" not in server.log()


def xff(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def served(conn: Connection) -> bool:
    return "superstore" in await asyncio.wait_for(conn.client.get_hosted_table_names(), 10)


async def test_anonymous_quotas_behind_a_trusted_proxy_are_per_real_address(server):
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(4):  # MAX_CONNECTIONS_PER_USER in tests.settings_access
            assert await served(await stack.enter_async_context(connect(server.ws_url, headers=xff("203.0.113.7"))))
        # The proxy appends the address it saw: what the client wrote on the left is ignored.
        for header in ("203.0.113.7", "198.51.100.1, 203.0.113.7"):
            async with connect(server.ws_url, headers=xff(header)) as fifth:
                await asyncio.wait_for(fifth.ws.wait_closed(), 10)
                assert fifth.ws.close_code == 4429
        async with connect(server.ws_url, headers=xff("203.0.113.8")) as neighbour:
            assert await served(neighbour)
        async with connect(server.ws_url) as direct:  # the proxy host itself, no header
            assert await served(direct)


def unix_connect(server: DaphneProcess, headers: dict[str, str] | None = None) -> Any:
    return connect("ws://localhost/ws/perspective/", unix_socket=str(server.unix_socket), headers=headers)


async def test_on_a_unix_socket_visitors_are_told_apart_by_the_proxy_header(server):
    async with contextlib.AsyncExitStack() as stack:
        # No header: the address is unknown, so no shared quota can lock these visitors out.
        for _ in range(6):
            assert await served(await stack.enter_async_context(unix_connect(server)))
        for _ in range(4):
            assert await served(await stack.enter_async_context(unix_connect(server, xff("192.0.2.1"))))
        async with unix_connect(server, xff("192.0.2.1")) as fifth:
            await asyncio.wait_for(fifth.ws.wait_closed(), 10)
            assert fifth.ws.close_code == 4429
        async with unix_connect(server, xff("192.0.2.2")) as other:
            assert await served(other)


def health(server: DaphneProcess, headers: dict[str, str] | None = None) -> dict:
    request = urllib.request.Request(server.http_url + "/health/", headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def test_health_counts_only_the_tables_the_requester_may_read(server, env):
    staff = make_user(env, "health-staff", staff=True, settings=SETTINGS)
    async with connect(server.ws_url) as anonymous, connect(server.ws_url, headers=cookie(staff)) as member:
        seen_by_anonymous = len(await anonymous.client.get_hosted_table_names())
        seen_by_staff = len(await member.client.get_hosted_table_names())
    assert seen_by_anonymous < seen_by_staff
    assert health(server)["tables"] == seen_by_anonymous
    assert health(server, cookie(staff))["tables"] == seen_by_staff
