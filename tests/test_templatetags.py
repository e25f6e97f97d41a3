"""The template tags, the staticfiles finder, the browser checks and the table pages."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders as django_finders
from django.core.checks import run_checks
from django.core.management import call_command
from django.template import Context, Template, TemplateSyntaxError
from django.test import Client, RequestFactory, override_settings

from django_perspective import finders
from django_perspective.browser import visible_tables, websocket_url
from tests.browserapp.perspective_tables import EVIL

# The tag asks the access policy (and the registry) whether the user may edit the table.
pytestmark = pytest.mark.django_db

FINDERS = [
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "django_perspective.finders.PerspectiveFinder",
]


class Elements(HTMLParser):
    """Every start tag with its decoded attributes, and every script's text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def render(source: str, request=None, **context) -> str:
    if request is not None:
        context["request"] = request
    return Template("{% load perspective %}" + source).render(Context(context))


def viewer(source: str, request=None, **context) -> dict:
    """Render one viewer tag and return its decoded ``data-django-perspective`` payload."""
    html = render(source, request, **context)
    [(tag, attrs)] = Elements(html).tags
    assert tag == "perspective-viewer"
    return {**json.loads(attrs["data-django-perspective"]), "attrs": attrs}


def test_assets_point_at_the_wheel_bundle_through_staticfiles():
    elements = Elements(render("{% perspective_assets %}"))
    tags = elements.tags
    assert (
        "link",
        {
            "rel": "stylesheet",
            "href": "/static/django_perspective/perspective/perspective-anywidget.css",
        },
    ) in tags
    assert (
        "link",
        {
            "rel": "modulepreload",
            "href": "/static/django_perspective/perspective/perspective-anywidget.js",
        },
    ) in tags
    assert (
        "script",
        {"type": "module", "src": "/static/django_perspective/perspective-django.js"},
    ) in tags
    assert ("script", {"id": "django-perspective-assets", "type": "application/json"}) in tags
    assert json.loads(elements.scripts[0]) == {
        "bundle": "/static/django_perspective/perspective/perspective-anywidget.js"
    }


@override_settings(PERSPECTIVE={"ASSETS_URL": "https://cdn.example.com/psp/5.6.1"})
def test_assets_url_loads_the_bundle_from_elsewhere():
    elements = Elements(render("{% perspective_assets %}"))
    assert json.loads(elements.scripts[0]) == {
        "bundle": "https://cdn.example.com/psp/5.6.1/perspective-anywidget.js"
    }
    assert (
        "link",
        {
            "rel": "stylesheet",
            "href": "https://cdn.example.com/psp/5.6.1/perspective-anywidget.css",
        },
    ) in elements.tags


def test_viewer_url_follows_the_request():
    factory = RequestFactory()
    plain = viewer('{% perspective_viewer "ticks" %}', factory.get("/", HTTP_HOST="localhost:8000"))
    assert plain["url"] == "ws://localhost:8000/ws/perspective/"
    secure = viewer(
        '{% perspective_viewer "ticks" %}', factory.get("/", secure=True, HTTP_HOST="127.0.0.1")
    )
    assert secure["url"] == "wss://127.0.0.1/ws/perspective/"
    assert viewer('{% perspective_viewer "ticks" %}')["url"] == "/ws/perspective/"
    assert (
        viewer('{% perspective_viewer "ticks" url="wss://other/ws/" %}')["url"] == "wss://other/ws/"
    )
    tokened = viewer('{% perspective_viewer "ticks" token="a b&c" %}', factory.get("/"))
    assert tokened["url"] == "ws://testserver/ws/perspective/?token=a+b%26c"


@override_settings(PERSPECTIVE={"WEBSOCKET_PATH": "/api/live/"})
def test_websocket_path_setting():
    assert websocket_url(RequestFactory().get("/"), "ticks") == "ws://testserver/api/live/"


def test_viewer_config_covers_the_viewer_options():
    payload = viewer(
        '{% perspective_viewer "superstore" plugin="Y Bar" columns="Sales, Profit" group_by="Region"'
        ' split_by="Category,Segment" sort="Sales desc,Region,Profit col asc"'
        ' filter=\'[["Region", "==", "West"]]\' expressions=exprs aggregates="Sales:sum,Profit:avg"'
        ' theme="Pro Dark" title="Sales" settings="open" id="v1" style="height: 600px" %}',
        exprs={"double": '"Sales" * 2'},
    )
    assert payload["table"] == "superstore"
    assert payload["config"] == {
        "plugin": "Y Bar",
        "columns": ["Sales", "Profit"],
        "group_by": ["Region"],
        "split_by": ["Category", "Segment"],
        "sort": [["Sales", "desc"], ["Region", "asc"], ["Profit", "col asc"]],
        "filter": [["Region", "==", "West"]],
        "expressions": {"double": '"Sales" * 2'},
        "aggregates": {"Sales": "sum", "Profit": "avg"},
        "theme": "Pro Dark",
        "title": "Sales",
        "settings": True,
    }
    assert payload["attrs"]["id"] == "v1"
    assert payload["attrs"]["style"] == "height: 600px"
    closed = viewer('{% perspective_viewer "t" settings="closed" columns=cols %}', cols=["a", "b"])
    assert closed["config"] == {"title": "t", "settings": False, "columns": ["a", "b"]}
    assert viewer('{% perspective_viewer "t" %}')["config"] == {"title": "t"}


def test_bad_options_are_template_errors():
    with pytest.raises(TemplateSyntaxError, match="filter="):
        render('{% perspective_viewer "t" filter=\'[["a", "=="\' %}')
    with pytest.raises(TemplateSyntaxError, match="aggregates item"):
        render('{% perspective_viewer "t" aggregates="Sales" %}')
    with pytest.raises(TemplateSyntaxError, match="settings="):
        render('{% perspective_viewer "t" settings="maybe" %}')
    with pytest.raises(TemplateSyntaxError, match="unexpected keyword argument 'colums'"):
        render('{% perspective_viewer "t" colums="a" %}')


def test_hostile_names_and_values_stay_inside_one_attribute():
    html = render(
        "{% perspective_viewer evil title=evil style=evil filter=flt %}",
        RequestFactory().get("/"),
        evil=EVIL,
        flt=[["name", "==", EVIL]],
    )
    elements = Elements(html)
    [(tag, attrs)] = elements.tags
    assert tag == "perspective-viewer" and elements.scripts == []
    assert set(attrs) == {"style", "data-django-perspective"}
    assert attrs["style"] == EVIL
    payload = json.loads(attrs["data-django-perspective"])
    assert payload["table"] == EVIL
    assert payload["config"] == {"title": EVIL, "filter": [["name", "==", EVIL]]}
    assert "<" not in html.replace("<perspective-viewer", "").replace("</perspective-viewer>", "")


def test_finder_finds_and_lists_the_wheel_files():
    finder = finders.PerspectiveFinder()
    path = finder.find("django_perspective/perspective/perspective-anywidget.js")
    assert Path(path) == finders.bundle_dir() / "perspective-anywidget.js"
    assert finder.find(
        "django_perspective/perspective/perspective-anywidget.css", find_all=True
    ) == [str(finders.bundle_dir() / "perspective-anywidget.css")]
    assert finder.find("django_perspective/perspective/../widget.py") == []
    assert finder.find("perspective-anywidget.js") == []
    listed = sorted((name, storage.prefix) for name, storage in finder.list(None))
    assert listed == [
        ("perspective-anywidget.css", finders.PREFIX),
        ("perspective-anywidget.js", finders.PREFIX),
    ]
    assert [name for name, _ in finder.list(["*.css"])] == ["perspective-anywidget.js"]


def test_collectstatic_with_manifest_storage(tmp_path: Path):
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    with override_settings(STATICFILES_FINDERS=FINDERS, STORAGES=storages, STATIC_ROOT=tmp_path):
        django_finders.get_finder.cache_clear()
        try:
            call_command("collectstatic", interactive=False, verbosity=0)
        finally:
            django_finders.get_finder.cache_clear()
    manifest = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]
    hashed = manifest["django_perspective/perspective/perspective-anywidget.js"]
    collected = (tmp_path / hashed).read_bytes()
    original = (finders.bundle_dir() / "perspective-anywidget.js").read_bytes()
    assert b"sourceMappingURL" not in collected
    assert collected.rstrip() == original[: original.rindex(b"//# sourceMappingURL")].rstrip()
    assert "django_perspective/perspective/perspective-anywidget.css" in manifest
    assert "django_perspective/perspective-django.js" in manifest


def browser_check_ids(**settings) -> set[str]:
    with override_settings(**settings):
        return {m.id for m in run_checks() if m.id.startswith("django_perspective.")}


def test_checks_pass_for_the_demo_settings():
    assert not {i for i in browser_check_ids() if i[-3:-1] == "01"}


def test_checks_name_a_missing_or_foreign_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(finders, "bundle_dir", lambda: tmp_path)
    errors = [m for m in run_checks() if m.id == "django_perspective.E010"]
    assert len(errors) == 2 and "perspective-anywidget.js" in errors[0].msg + errors[1].msg
    (tmp_path / "perspective-anywidget.js").write_text("export default {};")
    (tmp_path / "perspective-anywidget.css").write_text("")
    [error] = [m for m in run_checks() if m.id == "django_perspective.E011"]
    assert "__wasm_module__" in error.msg and "perspective-viewer" in error.msg
    # A bundle from ASSETS_URL is not on disk to check.
    assert "django_perspective.E011" not in browser_check_ids(PERSPECTIVE={"ASSETS_URL": "/psp/"})


def test_checks_for_browser_settings():
    assert "django_perspective.E012" in browser_check_ids(PERSPECTIVE={"ASSETS_URL": 5})
    assert "django_perspective.E012" in browser_check_ids(PERSPECTIVE={"ASSETS_URL": ""})
    assert "django_perspective.E013" in browser_check_ids(PERSPECTIVE={"WEBSOCKET_PATH": "ws/"})
    assert "django_perspective.W010" in browser_check_ids(STATICFILES_FINDERS=FINDERS[:1])
    assert "django_perspective.W010" not in browser_check_ids(
        STATICFILES_FINDERS=FINDERS[:1], PERSPECTIVE={"ASSETS_URL": "https://cdn.example.com/psp/"}
    )


@pytest.mark.django_db
def test_table_pages_list_code_defined_tables_and_404_others():
    client = Client()
    response = client.get("/perspective/")
    assert response.status_code == 200
    for name in ("superstore", "ticks"):
        assert f'href="/perspective/{name}/"' in response.content.decode()
    assert set(visible_tables(RequestFactory().get("/"))) >= {"superstore", "ticks"}
    page = client.get("/perspective/ticks/")
    assert page.status_code == 200
    [(_, attrs)] = [t for t in Elements(page.content.decode()).tags if t[0] == "perspective-viewer"]
    assert json.loads(attrs["data-django-perspective"])["table"] == "ticks"
    assert client.get("/perspective/no-such-table/").status_code == 404
