"""Live registry rows: a published model row with ``live`` follows the database as it commits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse

import django_perspective as dp
from django_perspective import live, publishing
from django_perspective.engine import get_engine
from django_perspective.models import PublishedTable
from tests.liveapp.models import Order

# The table follows saves once they commit; the engine thread reads rows on its own connection.
pytestmark = pytest.mark.django_db(transaction=True)

NAME = "live-orders"
ADD = reverse("admin:django_perspective_publishedtable_add")
LIVE_ERROR = "Only a Django model source can follow the database; untick live or choose the model source."


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def cleanup():
    yield
    for name in (NAME, "renamed"):
        live.unfollow(name)
        if name in dp.hosted_tables():
            dp.delete_table(name)


def live_row(**fields) -> PublishedTable:
    values = {
        "name": NAME,
        "source": "model",
        "model": "liveapp.Order",
        "filter": {"status": "open"},
        "fields": "customer,status,amount",
        "published": True,
        "live": True,
        "access": "public",
    }
    values.update(fields)
    return PublishedTable.objects.create(**values)  # hosted as the save commits


def customers(name: str = NAME) -> dict[int, str]:
    return {row["id"]: row["customer"] for row in dp.get_table(name).to_records()}


def test_a_live_model_row_follows_creates_updates_and_deletes():
    ann = Order.objects.create(customer="ann")
    Order.objects.create(customer="bob", status="closed")
    obj = live_row()
    obj.refresh_from_db()
    assert obj.last_error == "" and obj.row_count == 1
    assert obj.schema == {"id": "integer", "customer": "string", "status": "string", "amount": "float"}
    assert live.followed(NAME)
    assert customers() == {ann.pk: "ann"}

    cat = Order.objects.create(customer="cat", amount=Decimal("2.50"))
    assert customers() == {ann.pk: "ann", cat.pk: "cat"}
    with transaction.atomic():
        cat.customer = "cathy"
        cat.save()
        assert customers()[cat.pk] == "cat"  # not committed yet
    assert customers()[cat.pk] == "cathy"
    ann.status = "closed"  # moves out of the filter
    ann.save()
    assert customers() == {cat.pk: "cathy"}
    cat.delete()
    assert customers() == {}


def test_unpublishing_stops_following_and_a_later_save_does_not_bring_it_back():
    Order.objects.create(customer="ann")
    obj = live_row()
    publishing.unpublish(obj)
    assert not live.followed(NAME) and NAME not in dp.hosted_tables()
    Order.objects.create(customer="late")  # no error, no table
    assert NAME not in dp.hosted_tables()

    assert publishing.publish(obj)  # the admin action follows again
    assert live.followed(NAME) and set(customers().values()) == {"ann", "late"}


def test_deleting_the_row_stops_following():
    live_row().delete()
    assert not live.followed(NAME) and NAME not in dp.hosted_tables()
    Order.objects.create(customer="late")
    assert NAME not in dp.hosted_tables()


def test_unticking_live_keeps_the_rows_but_stops_following():
    ann = Order.objects.create(customer="ann")
    obj = live_row()
    obj.live = False
    obj.save()  # reloaded once, as a plain model table
    assert not live.followed(NAME)
    assert customers() == {ann.pk: "ann"}
    Order.objects.create(customer="late")
    assert customers() == {ann.pk: "ann"}


def test_renaming_a_live_row_follows_under_the_new_name_only():
    obj = live_row()
    obj.name = "renamed"
    obj.save()
    assert live.followed("renamed") and not live.followed(NAME)
    assert NAME not in dp.hosted_tables()
    order = Order.objects.create(customer="new")
    assert customers("renamed") == {order.pk: "new"}


def test_engine_start_follows_live_rows_again():
    live_row()
    live.unfollow(NAME)  # as a new process finds it: nothing hosted, nothing followed
    dp.delete_table(NAME)
    assert publishing.host_published(get_engine()) >= 1
    assert live.followed(NAME)
    order = Order.objects.create(customer="after-restart")
    assert customers() == {order.pk: "after-restart"}


def test_live_is_refused_on_other_sources():
    obj = PublishedTable(name="t", source="file", live=True)
    obj.file.save("t.csv", ContentFile(b"id,city\n1,Paris\n"), save=False)
    with pytest.raises(ValidationError) as caught:
        obj.full_clean()
    assert caught.value.message_dict == {"live": [LIVE_ERROR]}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"fields": "customer,status", "index_column": "customer"}, "index_column",
         'A live table is indexed by the primary key: leave the index column blank or set it to "id".'),
        ({"row_limit": 10}, "row_limit", "A live table keeps every matching row; leave the row limit blank."),
    ],
)
def test_a_live_model_row_is_indexed_by_primary_key_without_a_limit(fields, field, message):
    obj = PublishedTable(name=NAME, source="model", model="liveapp.Order", live=True, **fields)
    with pytest.raises(ValidationError) as caught:
        obj.full_clean()
    assert caught.value.message_dict == {field: [message]}


def admin_form(**fields) -> dict:
    data = {
        "name": NAME, "title": "", "description": "", "published": "on", "source": "model",
        "model": "liveapp.Order", "filter": "{}", "sql": "", "database": "default", "provider": "",
        "fields": "", "index_column": "", "row_limit": "", "access": "public", "access_group": "",
        "access_permission": "", "live": "on",
    }
    data.update(fields)
    return data


def test_the_admin_publishes_a_live_row_and_refuses_live_on_a_file(admin_client):
    response = admin_client.post(
        ADD, admin_form(source="file", model="", file=SimpleUploadedFile("t.csv", b"id,city\n1,Paris\n")), follow=True
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"live": [LIVE_ERROR]}
    assert not PublishedTable.objects.exists()

    response = admin_client.post(ADD, admin_form(fields="customer"), follow=True)
    assert f'"{NAME}": published, 0 rows.' in [str(m) for m in response.context["messages"]]
    assert live.followed(NAME)
    order = Order.objects.create(customer="ann")
    assert customers() == {order.pk: "ann"}
    changelist = admin_client.get(reverse("admin:django_perspective_publishedtable_changelist"))
    assert b"column-live" in changelist.content
