"""perspective_publish, perspective_tables and perspective_reload through call_command."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

import pyarrow as pa

from django_perspective import publishing
from django_perspective.models import PublishedTable

from .loading import CheckedEngine, arrow_file
from .servers import ROOT

pytestmark = pytest.mark.django_db

CSV = b"id,city,amount\n1,Paris,2.5\n2,Lyon,3.0\n3,Nice,4.25\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path / "media"


@pytest.fixture(autouse=True)
def engine(monkeypatch):
    engine = CheckedEngine(poll_interval=0.0)
    monkeypatch.setattr(publishing, "get_engine", lambda: engine)
    yield engine
    engine.shutdown()


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def stored(media) -> list[str]:
    return sorted(p.name for p in media.rglob("*") if p.is_file()) if media.exists() else []


def test_publish_a_file_copies_it_hosts_it_and_saves_the_row(tmp_path, media, engine):
    source = tmp_path / "Orders 2024.csv"
    source.write_bytes(CSV)
    out, _ = run("perspective_publish", str(source), "--index", "id", "--access", "public", "--title", "Orders")
    assert out.splitlines() == ["orders_2024: published, 3 rows.", "Running servers host it when they restart."]
    obj = PublishedTable.objects.get(name="orders_2024")
    assert (obj.published, obj.row_count, obj.title, obj.access, obj.index_column) == (True, 3, "Orders", "public", "id")
    assert obj.last_loaded is not None and obj.schema == {"id": "integer", "city": "string", "amount": "float"}
    assert obj.file.read() == CSV and source.read_bytes() == CSV
    assert stored(media) == ["Orders_2024.csv"]
    assert engine.run(lambda: engine.client.open_table("orders_2024").size()) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"id,city\n1,Paris\n2,Lyon,extra\n",
            "file: Rows of the CSV file have different numbers of columns: line 3 has 3 values where the header has 2 "
            "(2,Lyon,extra).",
        ),
        (b"id,id,amount\n1,2,3.5\n", 'file: The file has several columns named "id"; give each column a name of its own.'),
        (bytes(range(256)) * 64, "file: The file is not text: it holds binary data. Upload a CSV file saved as UTF-8 text."),
    ],
)
def test_a_bad_file_fails_with_the_admins_message_and_is_never_stored(tmp_path, media, engine, content, message):
    source = tmp_path / "orders.csv"
    source.write_bytes(content)
    with pytest.raises(CommandError) as caught:
        run("perspective_publish", str(source))
    assert str(caught.value) == f"orders: not published: {message}"
    assert not PublishedTable.objects.exists() and stored(media) == []
    assert "orders" not in engine.run(engine.client.get_hosted_table_names)


def test_a_dictionary_of_int64_arrow_file_publishes_with_its_values(tmp_path, media, engine):
    source = tmp_path / "codes.feather"
    source.write_bytes(arrow_file({"id": [1, 2, 3], "code": pa.array([7, 8, 7]).dictionary_encode()}))
    out, _ = run("perspective_publish", str(source), "--index", "id")
    assert out.startswith("codes: published, 3 rows.")
    assert PublishedTable.objects.get(name="codes").schema == {"id": "integer", "code": "integer"}
    assert engine.run(lambda: engine.client.open_table("codes").view().to_columns()["code"]) == [7, 8, 7]
    assert stored(media) == ["codes.feather"]


def test_a_file_the_engine_refuses_is_never_stored(tmp_path, media, engine):
    # "orders" is hosted without an index and a view is open: it cannot be re-created with one.
    view = engine.run(lambda: engine.host("orders", CSV.decode()).view())
    source = tmp_path / "orders.csv"
    source.write_bytes(CSV)
    with pytest.raises(CommandError, match="orders: not published: PyPerspectiveError: .*Cannot delete table with views"):
        run("perspective_publish", str(source), "--index", "id")
    assert not PublishedTable.objects.exists() and stored(media) == []
    engine.run(view.delete)


def test_an_existing_name_needs_replace(tmp_path, media):
    source = tmp_path / "orders.csv"
    source.write_bytes(CSV)
    run("perspective_publish", str(source))
    with pytest.raises(CommandError, match='A table named "orders" exists; pass --replace'):
        run("perspective_publish", str(source))
    source.write_bytes(CSV + b"4,Metz,1.0\n")
    out, _ = run("perspective_publish", str(source), "--replace", "--access", "authenticated")
    assert out.startswith("orders: published, 4 rows.")
    obj = PublishedTable.objects.get()
    assert obj.row_count == 4 and obj.access == "authenticated"


def test_publish_a_model_with_fields_and_a_filter(engine):
    User = get_user_model()
    User.objects.create(username="ada", is_staff=True)
    User.objects.create(username="alan")
    out, _ = run("perspective_publish", "--model", "auth.User", "--name", "staff", "--fields", "username", "--filter", '{"is_staff": true}')
    assert out.startswith("staff: published, 1 rows.")
    assert engine.run(lambda: engine.client.open_table("staff").view().to_columns()["username"]) == ["ada"]
    with pytest.raises(CommandError, match="staff2: not published: fields: auth.User has no field salary"):
        run("perspective_publish", "--model", "auth.User", "--name", "staff2", "--fields", "salary")
    with pytest.raises(CommandError, match='There is no group named "traders"'):
        run("perspective_publish", "--model", "auth.User", "--name", "staff3", "--access", "group", "--group", "traders")
    assert list(PublishedTable.objects.values_list("name", flat=True)) == ["staff"]


def test_tables_lists_rows_and_code_tables(tmp_path, media):
    source = tmp_path / "orders.csv"
    source.write_bytes(CSV)
    run("perspective_publish", str(source), "--access", "public")
    PublishedTable.objects.create(name="draft", source="model", model="auth.User", last_error="auth.User has no field x")
    lines = run("perspective_tables")[0].splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "PUBLISHED", "ACCESS", "ROWS", "LAST", "LOADED", "LAST", "ERROR"]
    by_name = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_name["orders"][:5] == ["orders", "file", "yes", "public", "3"]
    assert by_name["draft"][:6] == ["draft", "model", "no", "staff", "-", "never"]
    assert " ".join(by_name["draft"][6:]) == "auth.User has no field x"
    assert by_name["superstore"][:4] == ["superstore", "code", "yes", "public"]


def test_reload_one_or_all_and_fail_loudly(tmp_path, media):
    source = tmp_path / "orders.csv"
    source.write_bytes(CSV)
    run("perspective_publish", str(source))
    run("perspective_publish", "--model", "auth.User", "--name", "users")
    PublishedTable.objects.create(name="draft", source="model", model="auth.User")
    assert run("perspective_reload", "orders")[0] == "orders: reloaded, 3 rows.\n"
    assert run("perspective_reload", "--all")[0] == "orders: reloaded, 3 rows.\nusers: reloaded, 0 rows.\n"

    (media / PublishedTable.objects.get(name="orders").file.name).write_bytes(b"")
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 of 2 tables failed to load."):
        call_command("perspective_reload", "--all", stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == "orders: failed: The file is empty.\n"
    assert PublishedTable.objects.get(name="orders").last_error == "The file is empty."
    with pytest.raises(CommandError, match="No published table named nope."):
        run("perspective_reload", "nope")
    with pytest.raises(CommandError, match="draft: not published; publish it first."):
        run("perspective_reload", "draft")
    with pytest.raises(CommandError, match="Give table names or --all."):
        run("perspective_reload")


def test_errors_exit_non_zero_from_the_shell(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "perspective_publish", str(tmp_path / "missing.csv")],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"CommandError: No file at {tmp_path / 'missing.csv'}." in result.stderr
