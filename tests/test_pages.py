"""The table pages, saved views and links, and what the viewer tag tells the browser, through
Django's test client (the browser side of the same is tests/test_browser_ux.py)."""

from __future__ import annotations

import base64
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.template import Context, Template, TemplateSyntaxError
from django.test import Client, RequestFactory

from django_perspective.browser import (
    decode_view_link,
    encode_view_link,
    table_details,
    unavailable_message,
)
from django_perspective.models import MAX_VIEW_CONFIG_BYTES, PublishedTable, SavedView, clean_view_config

pytestmark = pytest.mark.django_db

PAYLOAD = re.compile(r'data-django-perspective="([^"]*)"')


@pytest.fixture
def ann():
    return get_user_model().objects.create_user("ann")


@pytest.fixture
def bob():
    return get_user_model().objects.create_user("bob")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def payload(html: str) -> dict:
    from html import unescape

    [found] = PAYLOAD.findall(html)
    return json.loads(unescape(found))


def tag(source: str, user=None, path: str = "/page/", **context) -> dict:
    request = RequestFactory().get(path)
    request.user = user if user is not None else AnonymousUser()
    html = Template("{% load perspective %}" + source).render(Context({"request": request, **context}))
    return payload(html)


def test_the_tag_tells_the_viewer_what_to_say_and_whether_it_may_edit(ann):
    staff = get_user_model().objects.create_user("sam", is_staff=True)
    visitor = tag('{% perspective_viewer "members" %}', path="/dash/?tab=2")
    assert visitor["unavailable"] == "Sign in to see “members”."
    assert visitor["signin"] == "/accounts/login/?next=/dash/%3Ftab%3D2"
    assert visitor["editable"] is False and visitor["error"] is None and visitor["link"] is False
    member = tag('{% perspective_viewer "staff_only" %}', ann)
    assert (member["unavailable"], member["signin"]) == ("You have no access to “staff_only”.", None)
    missing = tag('{% perspective_viewer "no_such_table" %}')
    assert (missing["unavailable"], missing["signin"]) == ("There is no table “no_such_table”.", None)
    # editable="staff" on the e2e app's table; nobody edits a table that declares nothing.
    assert tag('{% perspective_viewer "editable" %}', staff)["editable"] is True
    assert tag('{% perspective_viewer "editable" %}', ann)["editable"] is False
    assert tag('{% perspective_viewer "superstore" %}', staff)["editable"] is False
    assert tag('{% perspective_viewer "superstore" link=True %}')["link"] is True
    with pytest.raises(TemplateSyntaxError, match="link="):
        tag('{% perspective_viewer "superstore" link="sometimes" %}')


def test_titles_come_from_the_registry_then_the_declaration_then_the_name():
    assert table_details("superstore").title == "Superstore orders"  # the demo declares it
    assert table_details("superstore").description.startswith("100,000 generated orders")
    assert table_details("members").title == "members"
    PublishedTable.objects.bulk_create(
        [PublishedTable(name="superstore", source="provider", provider="superstore", published=True, access="public", title="Orders", description="Ours.")]
    )
    assert (table_details("superstore").title, table_details("superstore").description) == ("Orders", "Ours.")
    assert tag('{% perspective_viewer "superstore" %}')["config"]["title"] == "Orders"
    assert tag('{% perspective_viewer "superstore" title="Mine" %}')["config"]["title"] == "Mine"
    listing = Client().get("/perspective/").content.decode()
    assert ">Orders</a> <code class=\"muted\">superstore</code>" in listing and "Ours." in listing


def test_a_saved_view_by_name_prefers_your_own_then_the_oldest_shared(ann, bob):
    SavedView.objects.create(table="superstore", name="Pivot", owner=bob, shared=True, config={"group_by": ["Region"]})
    SavedView.objects.create(table="superstore", name="Pivot", owner=None, shared=True, config={"group_by": ["Segment"]})
    SavedView.objects.create(table="superstore", name="Mine", owner=bob, config={"columns": ["Sales"]})
    source = '{% perspective_viewer "superstore" view=name plugin="Y Bar" %}'
    assert tag(source, ann, name="Pivot")["config"] == {"title": "Superstore orders", "group_by": ["Region"], "plugin": "Y Bar"}
    SavedView.objects.create(table="superstore", name="Pivot", owner=ann, config={"group_by": ["Category"]})
    assert tag(source, ann, name="Pivot")["config"]["group_by"] == ["Category"]
    assert tag(source, None, name="Pivot")["config"]["group_by"] == ["Region"]  # visitors: shared only
    private = tag(source, ann, name="Mine")
    assert private["error"] == "There is no saved view “Mine” of “superstore” that you may open."
    assert tag(source, bob, name="Mine")["config"]["columns"] == ["Sales"]
    # A whole config, with the tag's own options on top; its table never overrides the tag's.
    whole = tag('{% perspective_viewer "ticks" config=c sort="price desc" %}', c={"table": "x", "columns": ["price"]})
    assert (whole["table"], whole["config"]["columns"], whole["config"]["sort"]) == ("ticks", ["price"], [["price", "desc"]])
    with pytest.raises(TemplateSyntaxError, match="config must be a dict"):
        tag('{% perspective_viewer "ticks" config="[1]" %}')


def test_view_configs_are_objects_of_bounded_size_without_a_table():
    assert clean_view_config({"table": "other", "group_by": ["a"]}) == {"group_by": ["a"]}
    with pytest.raises(ValidationError, match="JSON object"):
        clean_view_config(["group_by"])
    with pytest.raises(ValidationError, match="may take 65,536 bytes"):
        clean_view_config({"title": "x" * MAX_VIEW_CONFIG_BYTES})
    config = {"group_by": ["Région"], "filter": [["Sales", ">", 10]]}
    assert decode_view_link(encode_view_link(config)) == config
    assert "=" not in encode_view_link(config) and "+" not in encode_view_link({"t": "\u00fe\u00ff" * 40})
    for broken, reason in (("%%%", "not readable"), (base64.urlsafe_b64encode(b"[1, 2]").decode(), "JSON object")):
        with pytest.raises(ValidationError, match=reason):
            decode_view_link(broken)
    with pytest.raises(ValidationError, match="characters long"):
        decode_view_link("a" * 20_000)


def test_a_hidden_table_page_is_a_friendly_404_that_names_no_secret(ann):
    for name in ("members", "no-such-table"):
        response = Client().get(f"/perspective/{name}/")
        assert response.status_code == 404
        page = response.content.decode()
        assert f"Sign in to see “{name}”." in page
        assert f'href="/accounts/login/?next=/perspective/{name}/"' in page
        assert "Traceback" not in page and "URLconf" not in page  # not Django's debug page
    page = signed_in(ann).get("/perspective/staff_only/").content.decode()
    assert "There is no table “staff_only”, or you have no access to it." in page
    assert page.count("staff_only") == signed_in(ann).get("/perspective/nope/").content.decode().count("nope")
    assert unavailable_message(None, "t", missing=True) == "There is no table “t”."


def test_saving_replacing_and_deleting_views_on_the_table_page(ann, bob):
    client = signed_in(ann)
    config = {"group_by": ["Region"], "table": "elsewhere", "plugin": "Y Bar"}
    response = client.post("/perspective/superstore/", {"name": "By region", "config": json.dumps(config), "shared": "on"})
    view = SavedView.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/perspective/superstore/?view={view.pk}"
    assert (view.table, view.owner, view.shared, view.config) == ("superstore", ann, True, {"group_by": ["Region"], "plugin": "Y Bar"})
    client.post("/perspective/superstore/", {"name": "By region", "config": json.dumps({"group_by": ["Segment"]})})
    view.refresh_from_db()
    assert (SavedView.objects.count(), view.config, view.shared) == (1, {"group_by": ["Segment"]}, False)

    page = client.get(f"/perspective/superstore/?view={view.pk}")
    assert page.status_code == 200
    assert payload(page.content.decode())["config"]["group_by"] == ["Segment"]
    assert payload(page.content.decode())["link"] is True
    other = signed_in(bob).get(f"/perspective/superstore/?view={view.pk}")  # private now
    assert other.status_code == 404 and "There is no saved view here by that link" in other.content.decode()
    assert "group_by" not in payload(other.content.decode())["config"]

    bad = client.post("/perspective/superstore/", {"name": "", "config": "not json"})
    assert bad.status_code == 400
    text = bad.content.decode()
    assert "This field is required." in text and "did not arrive" in text
    assert Client().post("/perspective/superstore/", {"name": "x", "config": "{}"})["Location"].startswith("/accounts/login/")
    signed_in(bob).post("/perspective/superstore/", {"delete": str(view.pk)})  # not bob's
    assert SavedView.objects.count() == 1
    client.post("/perspective/superstore/", {"delete": str(view.pk)})
    assert SavedView.objects.count() == 0
    # Saving needs read access to the table, like opening it.
    assert signed_in(ann).post("/perspective/staff_only/", {"name": "x", "config": "{}"}).status_code == 404


def test_a_link_carries_the_view_and_an_unreadable_one_falls_back_with_a_notice():
    config = {"split_by": ["Category"], "table": "ticks"}
    page = Client().get(f"/perspective/superstore/?config={encode_view_link(config)}")
    assert page.status_code == 200
    sent = payload(page.content.decode())
    assert (sent["table"], sent["config"]["split_by"], sent["config"]["theme"]) == ("superstore", ["Category"], "Pro Dark")
    broken = Client().get("/perspective/superstore/?config=%%%")
    assert broken.status_code == 400
    assert "not readable: copy the whole link. Showing the table as it opens by default." in broken.content.decode()
    assert "split_by" not in payload(broken.content.decode())["config"]
