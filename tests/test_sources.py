"""Registry sources beyond files: model filters, SQL (SQLite and PostgreSQL), code providers, access."""

from __future__ import annotations

import io
import time
import uuid

import pyarrow as pa
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, Permission
from django.core.exceptions import ValidationError
from django.db import OperationalError, connections, transaction

from django_perspective.data import Encoded
from django_perspective import access, publishing, sources, sql
from django_perspective.engine import Engine
from django_perspective.models import PublishedTable
from django_perspective.tables import TableSpec, declared

PG_ALIAS = "perspective_pg"


@pytest.fixture
def engine():
    engine = Engine(poll_interval=0.0)
    yield engine
    engine.shutdown()


def rows_of(data: Encoded) -> list[dict]:
    return pa.ipc.open_stream(io.BytesIO(data.payload)).read_all().to_pylist()


def error_of(obj: PublishedTable) -> tuple[str | None, list[str]]:
    with pytest.raises(ValidationError) as caught:
        sources.load(obj)
    return caught.value.code, caught.value.messages


@pytest.fixture
def people(db):
    User = get_user_model()
    return [
        User.objects.create(username="ada", is_staff=True),
        User.objects.create(username="alan", is_staff=False),
        User.objects.create(username="grace", is_staff=True),
    ]


def test_a_model_filter_keeps_the_matching_rows(people):
    obj = PublishedTable(name="staff", source="model", model="auth.User", fields="username", filter={"is_staff": True})
    rows, index = sources.load(obj)
    assert index == "id" and [row["username"] for row in rows] == ["ada", "grace"]
    obj.filter = {"username__startswith": "a", "id__gte": people[1].pk}
    assert [row["username"] for row in sources.load(obj)[0]] == ["alan"]
    obj.filter = {"username": "nobody"}
    assert sources.load(obj)[0] == {"id": "integer", "username": "string"}  # no rows: the model's types


def test_a_model_table_that_empties_keeps_its_column_types_across_reloads(people, engine):
    obj = PublishedTable.objects.create(
        name="crew", source="model", model="auth.User", fields="username", filter={"username": "nobody"}
    )
    assert publishing.reload(obj, engine)  # hosted empty, typed from the model
    obj.filter = {}
    assert publishing.reload(obj, engine)
    obj.filter = {"username": "nobody"}
    assert publishing.reload(obj, engine)  # emptied in place: viewers keep their views
    obj.filter = {}
    assert publishing.reload(obj, engine)
    table = engine.run(lambda: engine.client.open_table("crew"))
    assert engine.run(table.schema) == {"id": "integer", "username": "string"}
    assert engine.run(lambda: table.view(columns=["id"]).to_columns()) == {"id": [p.pk for p in people]}


@pytest.mark.parametrize(
    ("lookups", "message"),
    [
        ({"sttaus": "open"}, 'The filter "sttaus" does not apply to auth.User: Cannot resolve keyword \'sttaus\' into field.'),
        ({"id__gtee": 1}, 'The filter "id__gtee" does not apply to auth.User: Unsupported lookup \'gtee\' for AutoField'),
        ({"is_staff": "maybe"}, 'The filter "is_staff" does not apply to auth.User: “maybe” value must be either True or False.'),
        ({"id__in": 5}, 'The filter "id__in" does not apply to auth.User:'),
        (["is_staff"], 'The filter must be an object of field lookups, e.g. {"status": "open", "amount__gte": 10}.'),
    ],
)
def test_unknown_filter_lookups_are_errors_on_the_filter_field(db, lookups, message):
    obj = PublishedTable(name="f", source="model", model="auth.User", filter=lookups)
    code, messages = error_of(obj)
    assert code == "filter" and messages[0].startswith(message)
    with pytest.raises(ValidationError) as caught:
        obj.full_clean()
    assert caught.value.message_dict["filter"][0].startswith(message)


def sql_table(query: str, database: str = "default", **fields) -> PublishedTable:
    return PublishedTable(name="q", source="sql", sql=query, database=database, **fields)


def test_an_sql_query_loads_as_arrow_with_its_index(people):
    obj = sql_table("SELECT id, username, is_staff FROM auth_user ORDER BY id; -- the team", index_column="id")
    data, index = sources.load(obj)
    assert index == "id"
    assert rows_of(data) == [{"id": u.pk, "username": u.username, "is_staff": u.is_staff} for u in people]
    obj.fields, obj.index_column = "username", ""
    assert rows_of(sources.load(obj)[0]) == [{"username": "ada"}, {"username": "alan"}, {"username": "grace"}]
    obj.full_clean()
    obj.sql = "SELECT username FROM auth_user WHERE username = 'nobody'"
    assert sources.load(obj) == ("username\n", None)


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("DELETE FROM auth_user", "sql", "Only a SELECT query (or WITH ... SELECT) can be published; this one is a DELETE statement."),
        ("SELECT 1; DELETE FROM auth_user", "sql", "Enter one statement only: the query may not contain several statements separated by ;."),
        ("  -- nothing\n", "sql", "Enter a SELECT query."),
        ("PRAGMA query_only = OFF", "sql", "Only a SELECT query (or WITH ... SELECT) can be published; this one is a PRAGMA statement."),
        ("SELECT nope FROM auth_user", "sql", "The query failed: no such column: nope"),
        ("SELECT username FROM auth_user", "fields", "No column named id; the query has: username."),
    ],
)
def test_queries_that_are_not_one_select_are_refused(db, query, field, message):
    obj = sql_table(query, fields="id" if field == "fields" else "")
    assert error_of(obj) == (field, [message])
    with pytest.raises(ValidationError) as caught:
        obj.full_clean()
    assert caught.value.message_dict[field] == [message]


def test_columns_of_the_same_name_are_refused(db):
    assert error_of(sql_table("SELECT 1 AS a, 2 AS a")) == ("sql", ["The query returns several columns named a; name them apart with AS."])


def test_an_unknown_database_alias_is_named(db):
    assert error_of(sql_table("SELECT 1", database="elsewhere")) == (
        "database",
        [f'There is no database "elsewhere"; configured: {", ".join(connections)}.'],
    )


def test_sqlite_refuses_writes_inside_the_read_only_block_and_only_there(people):
    with sql.read_only("default") as connection, connection.cursor() as cursor:
        with pytest.raises(OperationalError, match="readonly"):
            cursor.execute("DELETE FROM auth_user")
    assert get_user_model().objects.count() == 3
    get_user_model().objects.create(username="after")  # the connection is writable again


def test_batches_of_different_types_settle_on_one_column_type(db):
    query = "WITH t(n, s) AS (VALUES (NULL, 1), (NULL, 2), (1, 'x'), (2.5, 3)) SELECT n, s FROM t"
    names, batches = sql.query_arrow("default", query, batch_rows=2)
    assert names == ["n", "s"] and len(batches) == 2
    table = pa.Table.from_batches(batches)
    assert table.schema.field("n").type == pa.float64() and table.schema.field("s").type == pa.string()
    assert table.to_pydict() == {"n": [None, None, 1.0, 2.5], "s": ["1", "2", "x", "3"]}


@pytest.fixture
def pg(django_db_blocker):
    """A PostgreSQL alias on the local server's ``test`` database, with a table only this test knows."""
    from django.db.utils import ConnectionHandler

    settings_dict = {"ENGINE": "django.db.backends.postgresql", "NAME": "test", "HOST": "127.0.0.1", "PORT": "5432", "USER": "postgres"}
    connections.settings[PG_ALIAS] = ConnectionHandler({"default": settings_dict}).settings["default"]
    suffix = uuid.uuid4().hex[:8]
    names = {"table": f"dp_orders_{suffix}", "fn": f"dp_sneak_{suffix}", "seq": f"dp_seq_{suffix}"}
    with django_db_blocker.unblock():
        with connections[PG_ALIAS].cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE {names['table']} (id int PRIMARY KEY, city text, amount numeric(8,2), "
                "open boolean, placed timestamptz, extra jsonb)"
            )
            cursor.execute(
                f"INSERT INTO {names['table']} VALUES (1, 'Paris', 2.50, true, '2024-05-01T10:00:00Z', '{{\"a\": 1}}'),"
                " (2, 'Lyon', 3.00, false, NULL, NULL)"
            )
            cursor.execute(f"CREATE SEQUENCE {names['seq']}")
            cursor.execute(
                f"CREATE FUNCTION {names['fn']}() RETURNS int LANGUAGE sql VOLATILE AS "
                f"'INSERT INTO {names['table']} (id, city) VALUES (99, ''sneaky'') RETURNING id'"
            )
        try:
            yield names
        finally:
            with connections[PG_ALIAS].cursor() as cursor:
                cursor.execute(f"DROP FUNCTION IF EXISTS {names['fn']}()")
                cursor.execute(f"DROP SEQUENCE IF EXISTS {names['seq']}")
                cursor.execute(f"DROP TABLE IF EXISTS {names['table']}")
            connections[PG_ALIAS].close()
            del connections[PG_ALIAS]
            del connections.settings[PG_ALIAS]


def test_postgresql_query_streams_typed_rows(pg):
    obj = sql_table(f"SELECT * FROM {pg['table']} ORDER BY id", database=PG_ALIAS, index_column="id")
    data, index = sources.load(obj)
    rows = rows_of(data)
    assert index == "id" and [r["city"] for r in rows] == ["Paris", "Lyon"]
    assert rows[0]["amount"] == 2.5 and rows[0]["open"] is True and rows[0]["extra"] == '{"a": 1}'
    assert rows[0]["placed"].isoformat() == "2024-05-01T10:00:00"  # timestamptz: the UTC instant, in ms


@pytest.mark.parametrize("call", ["fn", "seq"])
def test_postgresql_writes_hidden_in_a_select_are_refused_by_the_read_only_transaction(pg, call):
    query = f"SELECT {pg['fn']}() AS id" if call == "fn" else f"SELECT nextval('{pg['seq']}') AS id"
    expected = "cannot execute INSERT in a read-only transaction" if call == "fn" else "cannot execute nextval() in a read-only transaction"
    assert sql.statement(query)  # the statement check lets it through: only the transaction stops it
    code, messages = error_of(sql_table(query, database=PG_ALIAS))
    assert code == "sql" and messages == [f"The query failed: {expected}"]
    with connections[PG_ALIAS].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {pg['table']}")
        assert cursor.fetchone() == (2,)
        cursor.execute(f"SELECT last_value, is_called FROM {pg['seq']}")
        assert cursor.fetchone() == (1, False)


def test_postgresql_statements_hidden_from_sqlparse_are_refused_by_the_database(pg):
    # sqlparse reads '\\' as an open string, PostgreSQL as a whole one: one SELECT to the
    # statement check, several statements to a plain cursor, whose COMMIT ends read-only.
    # The probe wraps the text in SELECT * FROM (...), hence the parentheses.
    probed = f"SELECT '\\' AS a) x; COMMIT; DELETE FROM {pg['table']}; SELECT * FROM (SELECT '\\' AS a"
    loaded = f"SELECT '\\' AS a; COMMIT; DELETE FROM {pg['table']}; SELECT '\\' AS a"
    assert sql.statement(probed) and sql.statement(loaded)
    message = "The query failed: cannot insert multiple commands into a prepared statement"
    with pytest.raises(ValidationError) as caught:  # the form's check: the LIMIT 0 probe
        sources.check(sql_table(probed, database=PG_ALIAS))
    assert (caught.value.code, caught.value.messages) == ("sql", [message])
    assert error_of(sql_table(loaded, database=PG_ALIAS)) == ("sql", [message])
    with connections[PG_ALIAS].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {pg['table']}")
        assert cursor.fetchone() == (2,)


def test_postgresql_outer_transaction_stays_writable_after_a_read(pg):
    with transaction.atomic(using=PG_ALIAS):
        assert rows_of(sources.load(sql_table(f"SELECT id FROM {pg['table']} ORDER BY id", database=PG_ALIAS))[0]) == [{"id": 1}, {"id": 2}]
        with connections[PG_ALIAS].cursor() as cursor:
            cursor.execute(f"INSERT INTO {pg['table']} (id, city) VALUES (3, 'Nice')")
    with connections[PG_ALIAS].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {pg['table']}")
        assert cursor.fetchone() == (3,)


@pytest.fixture
def provided():
    calls = []

    def loader():
        calls.append(1)
        return [{"id": 1, "v": 1.0}, {"id": 2, "v": 2.0}]

    declared.register(TableSpec("provided", loader, index="id", limit=None, access="staff"))
    yield calls
    declared.withdraw("provided")


def test_a_provider_row_must_name_a_declared_table_and_keep_its_name(db, provided):
    with pytest.raises(ValidationError) as caught:
        PublishedTable(name="other", source="provider", provider="provided").full_clean()
    assert caught.value.message_dict["name"] == ['A table defined in code keeps its name: set the name to "provided".']
    with pytest.raises(ValidationError) as caught:
        PublishedTable(name="missing", source="provider", provider="missing").full_clean()
    assert caught.value.message_dict["provider"][0].startswith('No table named "missing" is declared in code')
    with pytest.raises(ValidationError) as caught:
        PublishedTable(name="provided", source="provider", provider="provided", index_column="v").full_clean()
    assert "index_column" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        PublishedTable(name="provided", source="file").full_clean()
    assert caught.value.message_dict["name"] == ['"provided" is a table defined in code; choose another name.']


def test_a_provider_row_publishes_the_code_table_and_decides_who_reads_it(db, provided, engine):
    superuser = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    anonymous = AnonymousUser()
    assert not access.can_read(anonymous, "provided")  # as declared: staff
    obj = PublishedTable.objects.create(name="provided", source="provider", provider="provided", access="public")
    assert not access.can_read(anonymous, "provided") and not access.can_read(superuser, "provided")  # unpublished: nobody

    assert publishing.publish(obj, engine)
    obj.refresh_from_db()
    assert obj.published and obj.row_count == 2 and obj.schema == {"id": "integer", "v": "float"}
    assert engine.run(lambda: engine.client.open_table("provided").get_index()) == "id"
    assert access.can_read(anonymous, "provided")  # the row's access, not the code's
    assert not access.can_update(superuser, "provided")  # updates stay as the code declares them

    token = frozenset({"provided"})  # a signed token's grant
    obj.access = "staff"
    obj.save()
    assert access.can_read(anonymous, "provided", token) and not access.can_read(anonymous, "provided")
    publishing.unpublish(obj, engine)
    assert not access.can_read(superuser, "provided")
    assert not access.can_read(anonymous, "provided", token)  # withdrawing a table withdraws its tokens
    assert "provided" in engine.run(engine.client.get_hosted_table_names)  # the code keeps hosting it
    obj.delete()
    assert access.can_read(superuser, "provided") and not access.can_read(anonymous, "provided")


@pytest.mark.django_db(transaction=True)  # the engine thread reads the rows on its own connection
def test_engine_start_hosts_published_provider_rows_without_loading_twice(provided, engine, settings, monkeypatch):
    monkeypatch.setattr(publishing, "get_engine", lambda: engine)
    settings.PERSPECTIVE = {"HOST_ON_START": False}
    PublishedTable.objects.create(name="provided", source="provider", provider="provided", access="public")
    PublishedTable.objects.update(published=True)  # as another process would have left it
    assert "provided" not in engine.run(engine.client.get_hosted_table_names)
    engine.run(engine.start)
    assert "provided" in engine.run(engine.client.get_hosted_table_names)
    assert len(provided) == 1
    assert PublishedTable.objects.get(name="provided").row_count == 2


class RowBackend:
    """Grants ``django_perspective.view_publishedtable`` on the row named "orders" only."""

    def authenticate(self, request, **credentials):
        return None

    def has_perm(self, user, perm, obj=None):
        return perm == "django_perspective.view_publishedtable" and getattr(obj, "name", None) == "orders"


def test_group_and_permission_access(db, settings):
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend", "tests.test_sources.RowBackend"]
    User = get_user_model()
    member, outsider = User.objects.create(username="member"), User.objects.create(username="outsider")
    traders = Group.objects.create(name="traders")
    member.groups.add(traders)
    PublishedTable.objects.create(name="book", source="sql", sql="SELECT 1", access="group", access_group=traders, published=True)
    assert access.can_read(member, "book") and not access.can_read(outsider, "book")
    traders.delete()
    assert not access.can_read(member, "book")  # the group is gone: nobody

    PublishedTable.objects.create(
        name="orders", source="sql", sql="SELECT 1", access="permission",
        access_permission="django_perspective.view_publishedtable", published=True,
    )
    PublishedTable.objects.create(
        name="refunds", source="sql", sql="SELECT 1", access="permission",
        access_permission="django_perspective.view_publishedtable", published=True,
    )
    assert access.can_read(outsider, "orders")  # per-object, through the row
    assert not access.can_read(outsider, "refunds")
    outsider.user_permissions.add(Permission.objects.get(codename="view_publishedtable"))
    assert access.can_read(User.objects.get(pk=outsider.pk), "refunds")  # global permission


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"access": "group"}, "access_group", "Choose the group whose members may read the table."),
        ({"access": "permission", "access_permission": "view_order"}, "access_permission", 'Give the permission as "app_label.codename", e.g. "sales.view_order".'),
        ({"access": "permission", "access_permission": "sales.view_order"}, "access_permission", 'There is no permission "sales.view_order".'),
    ],
)
def test_access_choices_are_validated(db, fields, field, message):
    with pytest.raises(ValidationError) as caught:
        PublishedTable(name="t", source="sql", sql="SELECT 1", **fields).full_clean()
    assert caught.value.message_dict[field] == [message]


def test_registry_rows_are_read_once_per_memo_for_every_connection(db, settings, django_assert_num_queries):
    """Many connections re-checking one table cost one query per memo period, not one each;
    a change saved in this process is seen at once, one made elsewhere within the memo."""
    settings.PERSPECTIVE = {"POLICY_CACHE_SECONDS": 5}
    assert access.memo_seconds() == 0.5 and access.decision_seconds() == 4.5
    obj = PublishedTable.objects.create(name="book", source="sql", sql="SELECT 1", access="public", published=True)
    anonymous = AnonymousUser()
    with django_assert_num_queries(1):
        assert all(access.can_read(anonymous, "book") for _ in range(200))
    obj.access = "staff"
    obj.save()  # in this process: forgotten at once
    assert not access.can_read(anonymous, "book")
    PublishedTable.objects.filter(pk=obj.pk).update(access="public")  # as another process would
    assert not access.can_read(anonymous, "book")  # still the row read just now
    settings.PERSPECTIVE = {"POLICY_CACHE_SECONDS": 0.5}
    time.sleep(access.memo_seconds() + 0.01)
    assert access.can_read(anonymous, "book")
