"""Live model tables in one process: signals, on_commit, rollbacks, filter moves, refresh."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import django_perspective as dp
from django_perspective import live
from django_perspective.tables import declared
from tests.liveapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True)

FIELDS = ["id", "customer", "status", "amount", "placed"]


@pytest.fixture
def orders():
    Order.objects.create(customer="ann", status="open", amount=Decimal("1.50"), placed=dt.date(2024, 5, 1))
    Order.objects.create(customer="bob", status="closed", amount=Decimal("2.00"))
    table = live.follow_queryset("live_orders", Order.objects.filter(status="open"), fields=FIELDS, access="public")
    yield table
    live.unfollow("live_orders")
    dp.delete_table("live_orders")


def rows(name: str = "live_orders") -> dict[int, dict]:
    return {row["id"]: row for row in dp.get_table(name).to_records()}


def customers(name: str = "live_orders") -> set[str]:
    return {row["customer"] for row in rows(name).values()}


def test_hosts_the_queryset_indexed_by_primary_key_with_model_types(orders):
    assert orders.index() == "id"
    assert orders.schema() == {"id": "integer", "customer": "string", "status": "string", "amount": "float", "placed": "date"}
    (row,) = rows().values()
    assert row["customer"] == "ann" and row["amount"] == 1.5
    assert row["placed"] == int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp() * 1000)


def test_an_empty_queryset_hosts_an_empty_typed_table():
    table = live.follow_queryset("live_empty", Order.objects.none(), fields=FIELDS)
    try:
        assert table.size() == 0
        assert table.schema()["amount"] == "float"
        Order.objects.create(customer="cat")  # none() never matches: stays empty
        assert table.size() == 0
    finally:
        live.unfollow("live_empty")
        dp.delete_table("live_empty")


def test_save_update_and_delete_reach_the_table(orders):
    order = Order.objects.create(customer="cat", amount=Decimal("3.25"))
    assert rows()[order.pk]["amount"] == 3.25
    order.amount = Decimal("4.75")
    order.save()
    assert rows()[order.pk]["amount"] == 4.75
    order.delete()
    assert customers() == {"ann"}


def test_changes_show_only_after_the_transaction_commits(orders):
    with transaction.atomic():
        order = Order.objects.create(customer="dan")
        Order.objects.filter(customer="ann").update(amount=9)  # no signal: not pushed
        order.customer = "dana"
        order.save()
        assert customers() == {"ann"}
    assert customers() == {"ann", "dana"}
    assert rows()[order.pk]["customer"] == "dana"


def test_a_rolled_back_save_never_shows(orders):
    ann = Order.objects.get(customer="ann")
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(customer="ghost")
        ann.customer = "renamed"
        ann.save()
        raise RuntimeError("roll back")
    assert customers() == {"ann"}
    # The rolled-back keys ride along with the next commit and are read back as committed.
    Order.objects.create(customer="eve")
    assert customers() == {"ann", "eve"}


def test_a_rolled_back_savepoint_keeps_the_outer_changes(orders):
    with transaction.atomic():
        Order.objects.create(customer="kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Order.objects.create(customer="dropped")
            raise RuntimeError("roll back the savepoint")
    assert customers() == {"ann", "kept"}


def test_rows_move_in_and_out_of_the_filter(orders):
    bob = Order.objects.get(customer="bob")
    bob.status = "open"
    bob.save()
    assert customers() == {"ann", "bob"}
    ann = Order.objects.get(customer="ann")
    ann.status = "closed"
    ann.save()
    assert customers() == {"bob"}
    ann.status = "open"
    ann.amount = Decimal("7")
    ann.save()
    assert rows()[ann.pk]["amount"] == 7.0


def test_many_saves_in_one_transaction_are_read_back_in_one_query(orders):
    with transaction.atomic():
        for i in range(50):
            Order.objects.create(customer=f"c{i}")
    assert len(rows()) == 51
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        for order in Order.objects.filter(status="open"):
            order.amount = Decimal("1")
            order.save()
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 2  # the loop's own query, then one read-back of all 51 keys
    assert {row["amount"] for row in rows().values()} == {1.0}


def test_refresh_after_changes_that_send_no_signal(orders):
    made = Order.objects.bulk_create([Order(customer=f"bulk{i}") for i in range(3)])
    Order.objects.filter(customer="ann").update(status="closed")
    assert customers() == {"ann"}
    live.refresh(Order, [order.pk for order in made] + [Order.objects.get(customer="ann").pk])
    assert customers() == {"bulk0", "bulk1", "bulk2"}
    Order.objects.filter(customer="bulk0").update(customer="whole")
    live.refresh("live_orders")
    assert customers() == {"whole", "bulk1", "bulk2"}
    with pytest.raises(LookupError):
        live.refresh("no_such_table")


def test_unfollow_freezes_the_table(orders):
    live.unfollow("live_orders")
    Order.objects.create(customer="late")
    assert customers() == {"ann"}


def test_a_declared_live_table_is_registered_and_hosted_on_first_use():
    Order.objects.create(customer="zed", status="open")
    live.live_model_table("declared_orders", Order.objects.filter(status="open"), fields=["customer"], access="public")
    try:
        assert declared.specs["declared_orders"].access == "public"
        assert customers("declared_orders") == {"zed"}
        assert dp.get_table("declared_orders").schema() == {"id": "integer", "customer": "string"}
        Order.objects.create(customer="yan", status="open")
        assert customers("declared_orders") == {"zed", "yan"}
    finally:
        declared.withdraw("declared_orders")
        live.unfollow("declared_orders")
        dp.delete_table("declared_orders")


def test_only_the_primary_key_can_index_a_live_table():
    with pytest.raises(ValueError, match="primary key"):
        live.follow_queryset("bad", Order.objects.all(), index="customer")
    with pytest.raises(ValueError, match="sliced"):
        live.follow_queryset("bad", Order.objects.all()[:5])
