"""The registry's admin through Django's test client: uploads, actions, the change page, SQL rights."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

import io

import pyarrow as pa

from django_perspective import publishing
from django_perspective.models import PublishedTable

from .loading import CheckedEngine, arrow_file

pytestmark = pytest.mark.django_db(transaction=True)  # the load runs when the admin's transaction commits

CSV = b"id,city,amount\n1,Paris,2.5\n2,Lyon,3.0\n3,Nice,4.25\n"
ADD = reverse("admin:django_perspective_publishedtable_add")
LIST = reverse("admin:django_perspective_publishedtable_changelist")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path / "media"


@pytest.fixture
def engine(monkeypatch):
    engine = CheckedEngine(poll_interval=0.0)
    monkeypatch.setattr(publishing, "get_engine", lambda: engine)
    yield engine
    engine.shutdown()


def hosted(engine: Engine) -> list[str]:
    return engine.run(engine.client.get_hosted_table_names)


def form(**fields) -> dict:
    data = {
        "name": "orders",
        "title": "",
        "description": "",
        "published": "on",
        "source": "file",
        "model": "",
        "filter": "{}",
        "sql": "",
        "database": "default",
        "provider": "",
        "fields": "",
        "index_column": "id",
        "row_limit": "",
        "access": "public",
        "access_group": "",
        "access_permission": "",
    }
    data.update(fields)
    return {key: value for key, value in data.items() if value is not None}


def parquet_bytes(columns: dict) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def damaged_parquet() -> bytes:
    """A Parquet file whose footer reads but whose middle is zeros: the damage shows at the second block."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"id": range(100_000), "city": [str(i) for i in range(100_000)]}), sink, row_group_size=10_000)
    data = bytearray(sink.getvalue())
    data[len(data) // 2 : len(data) // 2 + 2000] = bytes(2000)
    return bytes(data)


def texts(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def row(name: str, content: bytes, **fields) -> PublishedTable:
    obj = PublishedTable(name=name, source="file", index_column="id", access="public", **fields)
    obj.file.save(f"{name}.csv", ContentFile(content), save=False)
    obj.save()
    return obj


def test_uploading_a_csv_publishes_and_hosts_it(admin_client, engine):
    response = admin_client.post(ADD, form(file=SimpleUploadedFile("orders.csv", CSV)), follow=True)
    assert response.status_code == 200
    assert '"orders": published, 3 rows.' in texts(response)
    obj = PublishedTable.objects.get(name="orders")
    assert obj.published and obj.row_count == 3 and obj.last_error == ""
    assert obj.schema == {"id": "integer", "city": "string", "amount": "float"}
    assert engine.run(lambda: engine.client.open_table("orders").size()) == 3
    assert engine.run(lambda: engine.client.open_table("orders").get_index()) == "id"


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (SimpleUploadedFile("orders.csv", b""), "The file is empty."),
        (SimpleUploadedFile("orders.csv", b"id,city\n1,Paris\n2,Lyon,extra\n"), "Rows of the CSV file have different numbers of columns"),
        (SimpleUploadedFile("orders.xlsx", b"PK\x03\x04"), "is not a supported file: use .csv"),
        (SimpleUploadedFile("orders.csv", "id,city\n1,caf\xe9\n".encode("latin-1")), "The file is not UTF-8 text"),
        (
            SimpleUploadedFile("orders.csv", b"id,id,amount\n1,2,3.5\n"),
            "The file has several columns named &quot;id&quot;; give each column a name of its own.",
        ),
        (SimpleUploadedFile("orders.csv", bytes(range(256)) * 64), "The file is not text: it holds binary data."),
        (SimpleUploadedFile("orders.csv", b"PK\x03\x04\x14\x00\x06\x00"), "it is a zip archive (an Excel .xlsx workbook is one)"),
        (SimpleUploadedFile("orders.csv", "id,city\n1,Paris\n".encode("utf-16")), "The file is UTF-16 text"),
        (
            SimpleUploadedFile("orders.csv", b"id,city\n1,Paris\n\n2,Lyon,extra\n3,Nice\n"),
            "line 4 has 3 values where the header has 2 (2,Lyon,extra).",
        ),
        (
            SimpleUploadedFile("orders.arrow", arrow_file({"id": [1], "span": pa.array([(1, 2, 3)], pa.month_day_nano_interval())})),
            "Column &quot;span&quot; is of type month_day_nano_interval, which Perspective cannot load",
        ),
        (
            SimpleUploadedFile("orders.parquet", parquet_bytes({"id": [1], "big": pa.array([2**64 - 1], pa.uint64())})),
            "Column &quot;big&quot; holds integers above 9,223,372,036,854,775,807",
        ),
        (SimpleUploadedFile("orders.parquet", damaged_parquet()), "The file could not be read: "),
    ],
)
def test_a_bad_upload_says_why_and_saves_nothing(admin_client, engine, media, upload, message):
    response = admin_client.post(ADD, form(file=upload))
    assert response.status_code == 200  # the form again, not a redirect
    assert message in response.content.decode()
    assert response.context["adminform"].form.errors["file"]
    assert not PublishedTable.objects.exists()
    assert not media.exists() or not any(path.is_file() for path in media.rglob("*"))
    assert "orders" not in hosted(engine)


def test_a_dictionary_of_int64_arrow_file_publishes_with_its_values_read_once(admin_client, engine, monkeypatch):
    from django_perspective import files

    reads = []
    read = files.read
    monkeypatch.setattr(files, "read", lambda *args: reads.append(args[0]) or read(*args))
    codes = arrow_file({"id": [1, 2, 3], "code": pa.array([7, 8, 7]).dictionary_encode()})
    response = admin_client.post(ADD, form(file=SimpleUploadedFile("codes.arrow", codes)), follow=True)
    assert reads == ["arrow"]  # checked whole on the form, hosted from that after the commit
    assert '"orders": published, 3 rows.' in texts(response)
    assert PublishedTable.objects.get(name="orders").schema == {"id": "integer", "code": "integer"}
    assert engine.run(lambda: engine.client.open_table("orders").view().to_columns()) == {"id": [1, 2, 3], "code": [7, 8, 7]}


def test_a_bad_row_deep_in_a_large_csv_is_refused_on_the_form_with_its_line(admin_client, engine, media):
    body = b"".join(b"%d,city-%d\n" % (i, i) for i in range(200_000))
    upload = SimpleUploadedFile("orders.csv", b"id,city\n" + body + b"200000,Metz,extra\n")
    response = admin_client.post(ADD, form(file=upload))
    assert response.context["adminform"].form.errors["file"] == [
        "Rows of the CSV file have different numbers of columns: line 200002 has 3 values where the header has 2 "
        "(200000,Metz,extra)."
    ]
    assert not PublishedTable.objects.exists()
    assert not media.exists() or not any(path.is_file() for path in media.rglob("*"))


def test_a_bad_replacement_file_is_refused_and_the_published_version_stays(admin_client, engine, media):
    admin_client.post(ADD, form(file=SimpleUploadedFile("orders.csv", CSV)))
    obj = PublishedTable.objects.get(name="orders")
    change = reverse("admin:django_perspective_publishedtable_change", args=[obj.pk])
    response = admin_client.post(change, form(file=SimpleUploadedFile("new.csv", b"id,id\n1,2\n")))
    assert response.context["adminform"].form.errors["file"] == [
        'The file has several columns named "id"; give each column a name of its own.'
    ]
    assert PublishedTable.objects.get(pk=obj.pk).file.name == obj.file.name
    assert sorted(path.name for path in media.rglob("*") if path.is_file()) == ["orders.csv"]
    assert engine.run(lambda: engine.client.open_table("orders").size()) == 3


def test_an_unknown_index_column_is_named_beside_its_field(admin_client, engine):
    response = admin_client.post(ADD, form(file=SimpleUploadedFile("orders.csv", CSV), index_column="code"))
    assert response.context["adminform"].form.errors["index_column"] == [
        'The index column "code" is not a column of the table; columns: id, city, amount.'
    ]
    assert not PublishedTable.objects.exists()


def test_actions_publish_reload_and_unpublish_with_a_message_per_row(admin_client, engine, media):
    good = row("good", CSV)
    bad = row("bad", CSV)
    (media / bad.file.name).write_bytes(b"id,city\n1,Paris\n2\n")  # changed in storage after validation
    pks = [good.pk, bad.pk]

    response = admin_client.post(LIST, {"action": "publish_tables", "_selected_action": pks}, follow=True)
    messages = texts(response)
    assert '"good": published, 3 rows.' in messages
    assert any(m.startswith('"bad": could not be loaded: Rows of the CSV file have different numbers') for m in messages)
    assert PublishedTable.objects.get(pk=good.pk).published
    assert not PublishedTable.objects.get(pk=bad.pk).published  # a failed publish leaves it as it was
    assert "good" in hosted(engine) and "bad" not in hosted(engine)

    (media / good.file.name).write_bytes(CSV + b"4,Metz,1.0\n")
    response = admin_client.post(LIST, {"action": "reload_tables", "_selected_action": pks}, follow=True)
    assert texts(response) == ['"bad": not published; publish it to load it.', '"good": reloaded, 4 rows.']
    assert engine.run(lambda: engine.client.open_table("good").size()) == 4

    response = admin_client.post(LIST, {"action": "unpublish_tables", "_selected_action": pks}, follow=True)
    assert set(texts(response)) == {'"good": unpublished.', '"bad": was not published.'}
    assert not PublishedTable.objects.filter(published=True).exists()
    assert "good" not in hosted(engine)


def test_the_change_page_shows_schema_rows_error_and_a_live_preview(admin_client, engine, media):
    obj = row("orders", CSV)
    assert publishing.publish(obj)
    (media / obj.file.name).write_bytes(b"")
    assert not publishing.reload(obj)  # the previous version stays hosted, the error is shown
    page = admin_client.get(reverse("admin:django_perspective_publishedtable_change", args=[obj.pk])).content.decode()
    assert "<td>city</td><td>string</td>" in page and "<td>amount</td><td>float</td>" in page
    assert '<div class="readonly">3</div>' in page
    assert "The file is empty." in page
    assert "<perspective-viewer" in page and "data-django-perspective=" in page
    assert "&quot;table&quot;: &quot;orders&quot;" in page
    assert "token=" in page  # an editor previews whatever the table's access
    assert "perspective-anywidget.js" in page

    listing = admin_client.get(LIST + "?load=failed").content.decode()
    assert "The file is empty." in listing and ">orders<" in listing


def test_the_preview_waits_for_publication(admin_client, engine):
    obj = row("draft", CSV)
    page = admin_client.get(reverse("admin:django_perspective_publishedtable_change", args=[obj.pk])).content.decode()
    assert "Publish the table to preview it." in page
    assert "<perspective-viewer" not in page


@pytest.fixture
def editor(client):
    user = get_user_model().objects.create_user("editor", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_perspective", codename__endswith="_publishedtable")
    )
    client.force_login(user)
    return user


def test_saving_an_sql_source_needs_the_publish_sql_permission(client, editor, engine):
    data = form(name="people", source="sql", sql="SELECT 1 AS id, 'Ada' AS name", index_column="id")
    response = client.post(ADD, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["source"] == [
        'Publishing an SQL query needs the "Can publish SQL tables" permission.'
    ]
    assert not PublishedTable.objects.exists()

    editor.user_permissions.add(Permission.objects.get(codename="publish_sql"))
    editor = get_user_model().objects.get(pk=editor.pk)  # a fresh permission cache
    client.force_login(editor)
    response = client.post(ADD, data, follow=True)
    assert '"people": published, 1 row.' in texts(response)
    assert engine.run(lambda: engine.client.open_table("people").view().to_records()) == [{"id": 1, "name": "Ada"}]


def test_publishing_a_model_needs_permission_to_view_it(client, editor, engine):
    data = form(name="people", source="model", model="auth.User", fields="id,username")
    response = client.post(ADD, data)
    assert response.context["adminform"].form.errors["model"] == [
        'Publishing auth.User needs permission to view it ("auth.view_user").'
    ]
    assert not PublishedTable.objects.exists()

    editor.user_permissions.add(Permission.objects.get(codename="view_user"))
    client.force_login(get_user_model().objects.get(pk=editor.pk))  # a fresh permission cache
    response = client.post(ADD, data, follow=True)
    assert '"people": published, 1 row.' in texts(response)


def test_sql_rows_are_read_only_to_staff_without_the_permission(client, editor, engine):
    obj = PublishedTable.objects.create(name="q", source="sql", sql="SELECT 1 AS x")
    change = reverse("admin:django_perspective_publishedtable_change", args=[obj.pk])
    assert client.post(change, form(name="q", source="file")).status_code == 403
    response = client.post(LIST, {"action": "publish_tables", "_selected_action": [obj.pk]}, follow=True)
    assert texts(response) == ['"q": SQL tables need the "Can publish SQL tables" permission; left as they were.']
    assert not PublishedTable.objects.get(pk=obj.pk).published


def test_a_bad_query_is_explained_on_the_sql_field(admin_client, engine):
    response = admin_client.post(ADD, form(name="q", source="sql", sql="SELECT nope FROM auth_user", index_column=""))
    assert response.context["adminform"].form.errors["sql"][0].startswith("The query failed: no such column: nope")
    response = admin_client.post(ADD, form(name="q", source="sql", sql="DELETE FROM auth_user", index_column=""))
    assert response.context["adminform"].form.errors["sql"] == [
        "Only a SELECT query (or WITH ... SELECT) can be published; this one is a DELETE statement."
    ]
    assert not PublishedTable.objects.exists()
