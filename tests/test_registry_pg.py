"""The registry against PostgreSQL with real daphne processes and perspective's own client.

One fresh database per run (created here, dropped afterwards): tables published from the
command line come back in a new process after a restart, and a table published through
the server's own admin over HTTP is served at once, then refused once unpublished.
"""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

import perspective
import pytest

from .servers import DaphneProcess, connect, django_script, make_user, manage
from .services import postgres_database

pytestmark = pytest.mark.e2e

CSV = b"id,city,amount\n1,Paris,2.5\n2,Lyon,3.0\n3,Nice,4.25\n"


@pytest.fixture(scope="module")
def pg_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for processes sharing a new PostgreSQL database and media directory."""
    with postgres_database("tests.settings") as env:
        yield {**env, "DJANGO_MEDIA_ROOT": str(tmp_path_factory.mktemp("pg-media"))}


async def table_rows(server: DaphneProcess, name: str) -> list[dict]:
    async with connect(server.ws_url) as conn:
        table = await conn.client.open_table(name)
        view = await table.view()
        return await view.to_records()


def test_published_tables_come_back_in_a_new_process(pg_env, tmp_path):
    source = tmp_path / "cities.csv"
    source.write_bytes(CSV)
    published = manage(pg_env, "perspective_publish", str(source), "--index", "id", "--access", "public")
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("cities: published, 3 rows.")
    broken = manage(pg_env, "perspective_publish", "--model", "auth.User", "--name", "people", "--fields", "salary")
    assert broken.returncode == 1 and "people: not published: fields: auth.User has no field salary" in broken.stderr
    django_script(
        pg_env,
        """
from django_perspective.models import PublishedTable
PublishedTable.objects.create(name="members", source="provider", provider="members", access="public", published=True)
""",
    )

    first = DaphneProcess(tmp_path / "first.log", env=pg_env).start()
    try:
        assert asyncio.run(table_rows(first, "cities")) == [
            {"id": 1, "city": "Paris", "amount": 2.5},
            {"id": 2, "city": "Lyon", "amount": 3.0},
            {"id": 3, "city": "Nice", "amount": 4.25},
        ]
    finally:
        first.kill()

    second = DaphneProcess(tmp_path / "second.log", env=pg_env).start()
    try:

        async def check() -> None:
            async with connect(second.ws_url) as anonymous:
                names = set(await anonymous.client.get_hosted_table_names())
                assert {"cities", "members"} <= names and "people" not in names
                assert await (await anonymous.client.open_table("cities")).size() == 3
                # "members" is declared for signed-in users; its published provider row opens it to anyone.
                assert await (await anonymous.client.open_table("members")).size() == 3

        asyncio.run(check())
    finally:
        second.stop()
    listing = manage(pg_env, "perspective_tables")
    assert re.search(r"^cities\s+file\s+yes\s+public\s+3\s", listing.stdout, re.M)
    assert re.search(r"^members\s+provider\s+yes\s+public\s+3\s", listing.stdout, re.M)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None  # followed by AdminSession, with the cookies the redirect set (messages)


class AdminSession:
    """The server's own admin over HTTP, signed in with a session cookie."""

    def __init__(self, server: DaphneProcess, session_key: str) -> None:
        self.server = server
        self.cookies = {"sessionid": session_key}
        self.opener = urllib.request.build_opener(_NoRedirect)

    def request(self, path: str, data: bytes | None = None, content_type: str | None = None) -> str:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.server.http_url + path, data=data, headers=headers)
        try:
            response = self.opener.open(request, timeout=30)
        except urllib.error.HTTPError as exc:
            if exc.code != 302:
                raise
            response = exc
        with response:
            for header in response.headers.get_all("Set-Cookie") or []:
                key, _, rest = header.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
            if response.status == 302:
                return self.request(urllib.parse.urlsplit(response.headers["Location"]).path)
            return response.read().decode()

    def csrf(self, path: str) -> str:
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.request(path)).group(1)

    def post(self, path: str, fields: dict[str, str | list[str]], files: dict[str, tuple[str, bytes]] | None = None) -> str:
        fields = {"csrfmiddlewaretoken": self.csrf(path), **fields}
        boundary = uuid.uuid4().hex
        parts = []
        for key, values in fields.items():
            for value in values if isinstance(values, list) else [values]:
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        for key, (filename, content) in (files or {}).items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{filename}"\r\n'
                f"Content-Type: text/csv\r\n\r\n".encode()
                + content
                + b"\r\n"
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request(path, body, f"multipart/form-data; boundary={boundary}")


def test_a_table_published_in_the_admin_is_served_then_refused_once_unpublished(pg_env, tmp_path):
    server = DaphneProcess(tmp_path / "admin.log", env=pg_env).start()
    try:
        admin = AdminSession(server, make_user(pg_env, "root", superuser=True))
        add = "/admin/django_perspective/publishedtable/add/"
        fields = {
            "name": "uploaded", "title": "", "description": "", "published": "on", "source": "file",
            "model": "", "filter": "{}", "sql": "", "database": "default", "provider": "", "fields": "",
            "index_column": "id", "row_limit": "", "access": "public", "access_group": "", "access_permission": "",
        }
        page = admin.post(add, fields, {"file": ("cities.csv", CSV)})
        assert "&quot;uploaded&quot;: published, 3 rows." in page
        pk = re.search(r'publishedtable/(\d+)/change/">uploaded<', page).group(1)

        async def served() -> None:
            async with connect(server.ws_url) as anonymous:
                assert "uploaded" in await anonymous.client.get_hosted_table_names()
                table = await anonymous.client.open_table("uploaded")
                assert table.get_index() == "id"
                assert await (await table.view(columns=["city"])).to_columns() == {"city": ["Paris", "Lyon", "Nice"]}

        asyncio.run(served())
        listing = "/admin/django_perspective/publishedtable/"
        page = admin.post(listing, {"action": "unpublish_tables", "_selected_action": [pk], "index": "0"})
        assert "&quot;uploaded&quot;: unpublished." in page

        async def refused() -> None:
            async with connect(server.ws_url) as anonymous:
                assert "uploaded" not in await anonymous.client.get_hosted_table_names()
                with pytest.raises(perspective.PerspectiveError, match='Unknown table "uploaded"'):
                    await anonymous.client.open_table("uploaded")

        asyncio.run(refused())
        bad = admin.post(add, {**fields, "name": "broken"}, {"file": ("broken.csv", b"id,city\n1\n")})
        assert "Rows of the CSV file have different numbers of columns" in bad
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_a_schema_keeps_its_column_order_on_postgresql(pg_env):
    """jsonb sorts an object's keys; the registry stores the schema as pairs to keep the order."""
    order = django_script(
        pg_env,
        "import json\n"
        "from django_perspective.models import PublishedTable\n"
        "schema = {'zeta': 'integer', 'alpha': 'string', 'mid': 'float'}\n"
        "PublishedTable.objects.bulk_create([PublishedTable(name='ordered', source='file', schema=schema)])\n"
        "PublishedTable.objects.filter(name='ordered').update(row_count=3, schema={**schema, 'b': 'date'})\n"
        "print(json.dumps(list(PublishedTable.objects.get(name='ordered').schema.items())))",
    )
    assert order == '[["zeta", "integer"], ["alpha", "string"], ["mid", "float"], ["b", "date"]]'
