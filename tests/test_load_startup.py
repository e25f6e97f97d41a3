"""Published rows at start-up under a real daphne process: what loads is served, what cannot is marked failed.

A dictionary<int64> Arrow file, published with ``perspective_publish``, used to kill the
process at every start (SIGSEGV inside Perspective); now it is decoded. The other rows are
written past the form's checks, as an older release or a file changed in storage would leave
them: they are marked failed and skipped while the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pyarrow as pa
import pytest

from .loading import arrow_file
from .servers import DaphneProcess, connect, django_script, manage, migrate

pytestmark = pytest.mark.e2e

ROWS = r"""
import json, sys
from django.core.files.storage import default_storage
from django.core.files.base import ContentFile
from django_perspective.models import PublishedTable

files = json.loads(sys.stdin.read())
rows = []
for name, (filename, content) in files.items():
    stored = default_storage.save(f"perspective/{filename}", ContentFile(bytes.fromhex(content)))
    rows.append(PublishedTable(name=name, source="file", file=stored, access="public", published=True))
PublishedTable.objects.bulk_create(rows)  # no post_save: nothing is loaded here
"""

STATUS = r"""
import json
from django_perspective.models import PublishedTable
print(json.dumps({row.name: [row.published, row.row_count, row.last_error] for row in PublishedTable.objects.all()}))
"""


def health(server: DaphneProcess) -> tuple[int, dict]:
    with urllib.request.urlopen(server.http_url + "/health/", timeout=10) as response:
        return response.status, json.loads(response.read())


async def served(server: DaphneProcess) -> tuple[list[str], dict]:
    async with connect(server.ws_url) as conn:
        names = await conn.client.get_hosted_table_names()
        table = await conn.client.open_table("codes")
        view = await table.view()
        try:
            return names, await view.to_columns()
        finally:
            await view.delete()


async def test_rows_that_cannot_load_at_start_up_are_marked_failed_and_the_server_keeps_serving(tmp_path):
    env = {"DJANGO_SQLITE_PATH": str(tmp_path / "db.sqlite3"), "DJANGO_MEDIA_ROOT": str(tmp_path / "media")}
    migrate(env)
    codes = tmp_path / "codes.arrow"
    codes.write_bytes(arrow_file({"id": [1, 2, 3], "code": pa.array([7, 8, 7]).dictionary_encode()}))
    published = manage(env, "perspective_publish", str(codes), "--index", "id", "--access", "public")
    assert published.returncode == 0, published.stderr
    files = {
        "spans": ("spans.arrow", arrow_file({"id": [1], "span": pa.array([(1, 2, 3)], pa.month_day_nano_interval())})),
        "dupes": ("dupes.csv", b"id,id,amount\n1,2,3.5\n"),
        "orders": ("orders.csv", b"id,city\n1,Paris\n2,Lyon\n"),
    }
    django_script(env, ROWS, json.dumps({name: (filename, content.hex()) for name, (filename, content) in files.items()}))

    for attempt in range(2):  # and again at the next start: the failed rows do not take it down either
        server = DaphneProcess(tmp_path / f"daphne-{attempt}.log", env=env).start()
        try:
            names, columns = await served(server)
            assert columns == {"id": [1, 2, 3], "code": [7, 8, 7]}
            assert {"codes", "orders"} <= set(names) and not {"spans", "dupes"} & set(names)
            async with connect(server.ws_url) as conn:  # a second client is served as well
                assert await (await conn.client.open_table("orders")).size() == 2
            status, body = await asyncio.to_thread(health, server)
            assert status == 200 and body["engine"] == "ok"
            assert server.proc.poll() is None, server.log()
        finally:
            server.stop()

    rows = json.loads(django_script(env, STATUS))
    assert rows["codes"] == [True, 3, ""]
    assert rows["orders"] == [True, 2, ""]
    assert rows["spans"][1] is None and rows["spans"][2].startswith(
        'Column "span" is of type month_day_nano_interval, which Perspective cannot load'
    )
    assert rows["dupes"][2] == 'The file has several columns named "id"; give each column a name of its own.'
    assert "Segmentation fault" not in server.log()
