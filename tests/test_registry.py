"""The registry: sources for every file format, the publish lifecycle, the admin, the commands."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from django_perspective.data import Encoded
from django_perspective import publishing, sources
from django_perspective.engine import Engine
from django_perspective.models import PublishedTable

pytestmark = pytest.mark.django_db

CSV = b"id,city,amount\n1,Paris,2.5\n2,Lyon,3.0\n3,Nice,4.25\n"
ROWS = [{"id": 1, "city": "Paris", "amount": 2.5}, {"id": 2, "city": "Lyon", "amount": 3.0}]


def arrow_file(kind: str) -> bytes:
    table = pa.Table.from_pylist(ROWS)
    sink = io.BytesIO()
    if kind == "parquet":
        pq.write_table(table, sink)
    elif kind == "feather":
        feather.write_feather(table, sink)
    else:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.getvalue()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def engine():
    engine = Engine(poll_interval=0.0)
    yield engine
    engine.shutdown()


def table_from(filename: str, content: bytes, **fields) -> PublishedTable:
    obj = PublishedTable(name=fields.pop("name", "t"), source="file", **fields)
    obj.file.save(filename, ContentFile(content), save=False)
    obj.save()
    return obj


def rows_of(data: Encoded) -> list[dict]:
    return pa.ipc.open_stream(data.payload).read_all().to_pylist()


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("data.csv", b"id,city,amount\n1,Paris,2.5\n2,Lyon,3.0\n"),
        ("data.json", json.dumps(ROWS).encode()),
        ("data.json", json.dumps({"id": [1, 2], "city": ["Paris", "Lyon"], "amount": [2.5, 3.0]}).encode()),
        ("data.ndjson", b"\n".join(json.dumps(r).encode() for r in ROWS)),
        ("data.feather", arrow_file("feather")),
        ("data.arrow", arrow_file("stream")),
        ("data.parquet", arrow_file("parquet")),
    ],
)
def test_every_format_loads_to_arrow_with_its_rows(filename, content):
    data, index = sources.load(table_from(filename, content, index_column="id"))
    assert index == "id"
    assert rows_of(data) == ROWS


@pytest.mark.parametrize(
    ("filename", "content", "field", "message"),
    [
        ("data.csv", b"", "file", "The file is empty."),
        ("data.csv", b"a,b\n", "file", "The file has no rows."),
        (
            "data.csv",
            b"a,b\n1,2\n3,4,5\n",
            "file",
            "Rows of the CSV file have different numbers of columns: line 3 has 3 values where the header has 2 (3,4,5).",
        ),
        (
            "data.csv",
            "name,v\ncaf\xe9,1\n".encode("latin-1"),
            "file",
            "The file is not UTF-8 text; save it as UTF-8 CSV and upload it again.",
        ),
        ("data.json", b"", "file", "The file is empty."),
        ("data.json", b"[1, 2]", "file", 'JSON must be a list of records [{"a": 1}, ...] or an object of columns {"a": [1, ...]}.'),
        ("data.json", b'{"a": [1, 2], "b": [1]}', "file", "The JSON columns have different lengths."),
        ("data.json", "[{\"a\": \"\xe9\"}]".encode("latin-1"), "file", "The file is not UTF-8 text; save it as UTF-8 JSON and upload it again."),
        ("data.parquet", b"", "file", "The file is empty."),
        ("data.parquet", b"not parquet at all", "file", "The file is not a Parquet file."),
        ("data.feather", b"not arrow at all", "file", "The file is not an Arrow IPC (Feather v2) file."),
        ("data.xlsx", b"PK", "file", '"data.xlsx" is not a supported file: use .csv, .json, .ndjson, .arrow, .feather or .parquet.'),
    ],
)
def test_bad_files_give_a_clear_error_naming_the_field(filename, content, field, message):
    obj = table_from(filename, content)
    with pytest.raises(ValidationError) as caught:
        sources.load(obj)
    assert caught.value.messages == [message]
    assert caught.value.code == field
    if not filename.endswith(".xlsx") and content:
        with pytest.raises(ValidationError) as cleaned:
            obj.full_clean()
        assert field in cleaned.value.message_dict


def test_unknown_index_and_field_columns_are_named():
    with pytest.raises(ValidationError) as caught:
        sources.load(table_from("d.csv", CSV, index_column="code"))
    assert caught.value.messages == ['The index column "code" is not a column of the table; columns: id, city, amount.']
    assert caught.value.code == "index_column"
    with pytest.raises(ValidationError) as caught:
        sources.load(table_from("d.csv", CSV, name="t2", fields="id, town"))
    assert caught.value.messages == ["No column named town; the file has: id, city, amount."]


def test_fields_select_columns():
    data, _ = sources.load(table_from("d.csv", CSV, fields="city,id"))
    assert rows_of(data)[0] == {"city": "Paris", "id": 1}


def test_names_of_code_defined_tables_and_duplicates_are_refused():
    obj = PublishedTable(name="superstore", source="model", model="auth.User")
    with pytest.raises(ValidationError) as caught:
        obj.full_clean()
    assert caught.value.message_dict["name"] == ['"superstore" is a table defined in code; choose another name.']
    PublishedTable.objects.create(name="users", source="model", model="auth.User")
    with pytest.raises(ValidationError) as caught:
        PublishedTable(name="users", source="model", model="auth.User").full_clean()
    assert caught.value.message_dict["name"] == ["Published table with this Name already exists."]
    with pytest.raises(ValidationError) as caught:
        PublishedTable(name="bad name!", source="model", model="auth.User").full_clean()
    assert "name" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        PublishedTable(name="m", source="model", model="auth.Nope").full_clean()
    assert caught.value.message_dict["model"] == ['"auth.Nope" is not an installed model; use "app_label.Model".']


def test_model_source_is_indexed_by_pk_and_encodes_dates():
    user = get_user_model().objects.create(username="ada", is_staff=True)
    obj = PublishedTable.objects.create(name="users", source="model", model="auth.User", fields="username,is_staff,date_joined")
    rows, index = sources.load(obj)
    assert index == "id"
    assert rows == [{"id": user.pk, "username": "ada", "is_staff": True, "date_joined": user.date_joined}]
    obj.fields = "username,salary"
    with pytest.raises(ValidationError) as caught:
        sources.load(obj)
    assert caught.value.messages[0].startswith("auth.User has no field salary; fields: id, password,")


def test_publish_reload_failure_keeps_previous_version_then_unpublish(engine):
    obj = table_from("d.csv", CSV, index_column="id", access="public")
    assert publishing.publish(obj, engine)
    obj.refresh_from_db()
    assert obj.published and obj.row_count == 3 and obj.last_error == "" and obj.last_loaded is not None
    assert obj.schema == {"id": "integer", "city": "string", "amount": "float"}
    assert engine.run(lambda: engine.client.open_table("t").size()) == 3

    obj.file.save("d2.csv", ContentFile(b"id,city,amount\n1,Paris,2.5\n2,Lyon\n"), save=False)
    assert not publishing.reload(obj, engine)
    obj.refresh_from_db()
    assert obj.last_error == "Rows of the CSV file have different numbers of columns: line 3 has 2 values where the header has 3 (2,Lyon)."
    assert obj.row_count == 3  # the status of the version still hosted
    assert engine.run(lambda: engine.client.open_table("t").size()) == 3

    obj.file.save("d3.csv", ContentFile(b"id,city,amount\n9,Metz,1.0\n"), save=False)
    assert publishing.reload(obj, engine)
    obj.refresh_from_db()
    assert obj.row_count == 1 and obj.last_error == ""
    view_rows = engine.run(lambda: engine.client.open_table("t").view().to_records())
    assert view_rows == [{"id": 9, "city": "Metz", "amount": 1.0}]

    publishing.unpublish(obj, engine)
    obj.refresh_from_db()
    assert not obj.published
    assert "t" not in engine.run(engine.client.get_hosted_table_names)
    publishing.unpublish(obj, engine)  # twice is harmless


def test_row_limit_is_the_tables_limit(engine):
    obj = table_from("d.csv", CSV, row_limit=2)
    assert publishing.publish(obj, engine)
    assert engine.run(lambda: engine.client.open_table("t").get_limit()) == 2
    assert PublishedTable.objects.get(pk=obj.pk).row_count == 2


@pytest.mark.django_db(transaction=True)  # the engine thread reads the rows on its own connection
def test_engine_start_hosts_published_tables_from_the_database(engine, settings):
    settings.PERSPECTIVE = {"HOST_ON_START": False}
    table_from("d.csv", CSV, name="on-start", published=True)
    table_from("d.csv", CSV, name="not-published")
    engine.run(engine.start)
    hosted = engine.run(engine.client.get_hosted_table_names)
    assert "on-start" in hosted and "not-published" not in hosted


def test_saving_reloads_or_unpublishes_on_commit(django_capture_on_commit_callbacks, monkeypatch, engine):
    monkeypatch.setattr(publishing, "get_engine", lambda: engine)
    with django_capture_on_commit_callbacks(execute=True):
        obj = table_from("d.csv", CSV, name="signalled", published=True)
    assert "signalled" in engine.run(engine.client.get_hosted_table_names)
    obj = PublishedTable.objects.get(pk=obj.pk)
    with django_capture_on_commit_callbacks(execute=True):
        obj.name = "renamed"
        obj.save()
    hosted = engine.run(engine.client.get_hosted_table_names)
    assert "renamed" in hosted and "signalled" not in hosted
    with django_capture_on_commit_callbacks(execute=True):
        obj.published = False
        obj.save()
    assert "renamed" not in engine.run(engine.client.get_hosted_table_names)
