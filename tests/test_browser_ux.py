"""A new user's first hour, in headless Chromium against a real daphne process: viewers that
say why they are empty, signing in, honest editing, saved views and links to the exact view.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page

from django_perspective.browser import encode_view_link

from .browsing import (  # noqa: F401  (browser is a fixture)
    LOAD_TIMEOUT_MS,
    SETTINGS,
    Console,
    browser,
    loaded,
    new_context,
    screenshot_path,
    state_is,
    status_link,
    status_text,
)
from .servers import ROOT, DaphneProcess, make_user, migrate

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

TABLE_PAGE = "#perspective-table"
GRID = "#v regular-table tbody"
EDIT_TOGGLE = "#v perspective-viewer-datagrid-toolbar #edit_mode"
PASSWORD = "a long demo password"


@pytest.fixture(scope="module")
def db_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("ux-db") / "db.sqlite3"
    env = {"DJANGO_SQLITE_PATH": str(path), "DJANGO_MEDIA_ROOT": str(path.parent / "media")}
    migrate(env, settings=SETTINGS)
    return env


def in_server_env(db_env: dict[str, str], code: str) -> str:
    """Run ``code`` with Django set up on the server's settings and database; its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env={**os.environ, **db_env, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def server(db_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    log = tmp_path_factory.mktemp("ux-logs") / "daphne.log"
    proc = DaphneProcess(log, env=db_env, settings=SETTINGS).start()
    yield proc
    proc.stop()


def login(db_env: dict[str, str], username: str, **options) -> str:
    return make_user(db_env, username, settings=SETTINGS, **options)


def settled(selector: str) -> str:
    return state_is(selector, "loaded", "error")


def open_page(browser: Browser, server: DaphneProcess, path: str, session: str | None = None) -> Page:
    page = new_context(browser, server.http_url, session).new_page()
    page.goto(server.http_url + path)
    return page


def saved_config(page: Page, selector: str) -> dict:
    return page.evaluate(f"async () => await document.querySelector({selector!r}).save()")


def test_a_viewer_says_why_it_shows_no_table(browser: Browser, server: DaphneProcess, db_env) -> None:
    ann = login(db_env, "ann")
    cases = [
        # (who, table, what the box says, its link)
        (None, "members", "Sign in to see “members”.", "/accounts/login/?next=/browser/viewer/members/"),
        (ann, "staff_only", "You have no access to “staff_only”.", None),
        (ann, "no_such_table", "There is no table “no_such_table”.", None),
        (None, "no_such_table", "There is no table “no_such_table”.", None),
    ]
    for session, table, message, link in cases:
        page = open_page(browser, server, f"/browser/viewer/{table}/", session)
        console = Console(page)
        page.wait_for_function(settled("#v"), timeout=LOAD_TIMEOUT_MS)
        assert page.get_attribute("#v", "data-perspective-state") == "error"
        assert (status_text(page, "#v"), status_link(page, "#v")) == (message, link)
        assert page.locator("#v > .django-perspective-status").is_visible()
        assert console.errors == []
        page.context.close()
    # A table the user may read says nothing: the box is only for reasons.
    page = open_page(browser, server, "/browser/viewer/members/", ann)
    page.wait_for_function(loaded("#v"), timeout=LOAD_TIMEOUT_MS)
    assert status_text(page, "#v") == ""
    page.context.close()


def test_the_sign_in_link_signs_in_and_comes_back_to_the_table(
    browser: Browser, server: DaphneProcess, db_env
) -> None:
    login(db_env, "bea", password=PASSWORD)
    page = open_page(browser, server, "/browser/viewer/members/")
    page.wait_for_function(settled("#v"), timeout=LOAD_TIMEOUT_MS)
    page.locator("#v > .django-perspective-status a").click()
    page.wait_for_url(re.compile(r"/accounts/login/\?next="))
    page.fill("input[name=username]", "bea")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert "Please enter a correct username and password" in page.inner_text("main")
    page.fill("input[name=username]", "bea")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.http_url + "/browser/viewer/members/")
    page.wait_for_function(loaded("#v"), timeout=LOAD_TIMEOUT_MS)
    rows = page.evaluate("async () => (await document.querySelector('#v').getView()).num_rows()")
    assert rows == 3 and status_text(page, "#v") == ""
    # Signing out (a POST from the demo's header) takes the table away again.
    page.goto(server.http_url + "/")
    page.wait_for_function(loaded("#targets-grid"), timeout=LOAD_TIMEOUT_MS)
    page.click("header button:text('Sign out')")
    page.wait_for_function(settled("#targets-grid"), timeout=LOAD_TIMEOUT_MS)
    assert status_text(page, "#targets-grid") == "Sign in to see “targets”."
    page.context.close()


def toggle_modes(page: Page, clicks: int = 7) -> list[str]:
    """The datagrid's edit mode before each click on its toolbar toggle."""
    modes = []
    toggle = page.locator(EDIT_TOGGLE)
    for _ in range(clicks):
        modes.append(toggle.get_attribute("data-edit-mode"))
        toggle.click()
        page.wait_for_timeout(150)
    return modes


def edit_modes_offered(page: Page) -> list[str]:
    """The edit modes the datagrid's plugin config schema offers (its settings panel's list)."""
    return page.evaluate(
        "() => document.querySelector('#v perspective-viewer-datagrid').plugin_config_schema()"
        ".fields.find((field) => field.key === 'edit_mode').variants.map((v) => v.value)"
    )


def test_read_only_tables_offer_no_edit_mode(browser: Browser, server: DaphneProcess, db_env) -> None:
    ann, boss = login(db_env, "ann"), login(db_env, "boss", staff=True)
    for session, table in ((None, "superstore"), (ann, "ledger")):  # ledger: staff edit it
        page = open_page(browser, server, f"/browser/viewer/{table}/?settings", session)
        console = Console(page)
        page.wait_for_function(loaded("#v"), timeout=LOAD_TIMEOUT_MS)
        modes = toggle_modes(page)
        assert "EDIT" not in modes and modes[:2] == ["READ_ONLY", "SELECT_ROW"], modes
        assert "EDIT" not in edit_modes_offered(page)
        # A saved view or a link that asks for edit mode is refused by the viewer itself.
        refusal = page.evaluate(
            "async () => { try { await document.querySelector('#v').restore("
            "{plugin_config: {edit_mode: 'EDIT'}}); return null; } catch (e) { return e.message; } }"
        )
        assert refusal is not None and '"EDIT" is not one of' in refusal
        assert page.locator(EDIT_TOGGLE).get_attribute("data-edit-mode") != "EDIT"
        assert console.errors == []
        page.context.close()
    # Staff may edit the ledger: their toggle does offer it.
    page = open_page(browser, server, "/browser/viewer/ledger/?settings", boss)
    page.wait_for_function(loaded("#v"), timeout=LOAD_TIMEOUT_MS)
    assert toggle_modes(page, 2) == ["READ_ONLY", "EDIT"]
    assert "EDIT" in edit_modes_offered(page)
    page.context.close()


def table_values(page: Page, column: str) -> list:
    return page.evaluate(
        f"async () => (await (await document.querySelector('#v').getView()).to_columns())[{column!r}]"
    )


def edit_cell(page: Page, row: int, text: str) -> None:
    page.locator(f"{GRID} tr").nth(row).locator("td").first.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_a_refused_edit_is_undone_and_explained(browser: Browser, server: DaphneProcess, db_env) -> None:
    boss = login(db_env, "boss", staff=True)
    page = open_page(browser, server, "/browser/viewer/ledger/?settings", boss)
    console = Console(page)
    page.wait_for_function(loaded("#v"), timeout=LOAD_TIMEOUT_MS)
    page.evaluate(
        "async () => await document.querySelector('#v').restore("
        "{columns: ['amount'], plugin_config: {edit_mode: 'EDIT'}})"
    )
    page.locator(f"{GRID} tr").nth(2).wait_for(timeout=LOAD_TIMEOUT_MS)
    edit_cell(page, 0, "11")
    for _ in range(50):
        if table_values(page, "amount") == [11, 20, 30]:
            break
        page.wait_for_timeout(100)
    assert table_values(page, "amount") == [11, 20, 30]

    # The ledger closes: the server now refuses the staff's edits (within POLICY_CACHE_SECONDS).
    with sqlite3.connect(db_env["DJANGO_SQLITE_PATH"]) as db:
        db.execute("INSERT INTO auth_group (name) VALUES ('ledger-closed')")
    try:
        page.wait_for_timeout(1000)
        edit_cell(page, 1, "22")
        notice = page.locator("#v > .django-perspective-notice")
        notice.wait_for(timeout=10_000)
        assert notice.inner_text() == "Your edit was not saved: table 'ledger' is read-only: update is not allowed"
        page.wait_for_function(
            f"document.querySelector({EDIT_TOGGLE.split(' ')[0]!r})"
            ".querySelector('perspective-viewer-datagrid-toolbar').shadowRoot"
            ".querySelector('#edit_mode').dataset.editMode === 'READ_ONLY'",
            timeout=10_000,
        )
        assert page.locator(f"{GRID} tr").nth(1).inner_text().strip() == "20.00"  # undone on screen
        assert table_values(page, "amount") == [11, 20, 30]  # and never saved
        assert "EDIT" not in edit_modes_offered(page)  # the viewer stops offering it
        assert console.errors == []  # the refusal is shown, not left as an uncaught error
    finally:
        with sqlite3.connect(db_env["DJANGO_SQLITE_PATH"]) as db:
            db.execute("DELETE FROM auth_group WHERE name = 'ledger-closed'")
    page.context.close()


PIVOT = {
    "plugin": "Y Bar",
    "group_by": ["Region"],
    "split_by": ["Category"],
    "columns": ["Sales"],
    "settings": False,
}


def pivot_of(config: dict) -> tuple:
    return tuple(config[key] for key in ("plugin", "group_by", "split_by", "columns"))


@pytest.mark.screenshot
def test_saved_views_and_links_open_the_same_pivot(
    browser: Browser, server: DaphneProcess, db_env, tmp_path: Path
) -> None:
    ann, bob = login(db_env, "ann"), login(db_env, "bob")
    page = open_page(browser, server, "/perspective/superstore/", ann)
    console = Console(page)
    page.wait_for_function(loaded(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
    page.evaluate(f"async (config) => await document.querySelector({TABLE_PAGE!r}).restore(config)", PIVOT)
    # The address follows the view on screen: it is a link to it.
    page.wait_for_url(re.compile(r"\?config="), timeout=10_000)
    link = page.url
    assert page.get_attribute("a[data-perspective-link]", "href") == link

    page.fill("input[name=name]", "Sales by region")
    page.check("input[name=shared]")
    page.click("form.perspective-save button[type=submit]")
    page.wait_for_url(re.compile(r"\?view=\d+$"))
    saved_link = page.url
    page.wait_for_function(loaded(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
    assert pivot_of(saved_config(page, TABLE_PAGE)) == pivot_of(PIVOT)
    assert page.locator(".perspective-views a.opened").inner_text() == "Sales by region"
    page.reload()
    page.wait_for_function(loaded(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
    assert pivot_of(saved_config(page, TABLE_PAGE)) == pivot_of(PIVOT)
    page.locator(f"{TABLE_PAGE} canvas.webgl-canvas").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot_path("saved-view.png", tmp_path)))
    assert console.errors == []

    # A colleague opens both links in a browser of their own: the same pivot, the same numbers.
    numbers = page.evaluate(
        f"async () => (await (await document.querySelector({TABLE_PAGE!r}).getView()).to_columns())"
    )
    for url in (saved_link, link):
        other = new_context(browser, server.http_url, bob).new_page()
        other.goto(url)
        other.wait_for_function(loaded(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
        assert pivot_of(saved_config(other, TABLE_PAGE)) == pivot_of(PIVOT)
        assert other.evaluate(
            f"async () => (await (await document.querySelector({TABLE_PAGE!r}).getView()).to_columns())"
        ) == numbers
        other.context.close()
    page.context.close()


def test_saved_views_keep_to_who_may_see_them(browser: Browser, server: DaphneProcess, db_env) -> None:
    ann, bob, carl = login(db_env, "ann"), login(db_env, "bob"), login(db_env, "carl", staff=True)
    page = open_page(browser, server, "/perspective/sales/", ann)
    page.wait_for_function(loaded(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
    page.evaluate(
        f"async () => await document.querySelector({TABLE_PAGE!r}).restore("
        "{group_by: ['region'], split_by: ['product'], columns: ['amount']})"
    )
    links = {}
    for name, shared in (("Shared pivot", True), ("My pivot", False)):
        page.fill("input[name=name]", name)
        page.set_checked("input[name=shared]", shared)
        page.click("form.perspective-save button[type=submit]")
        page.wait_for_url(re.compile(r"\?view=\d+$"))
        page.wait_for_function(loaded(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
        links[name] = page.url
    page.context.close()

    # A visitor may not read the table: the shared view's link gets the viewer's message.
    visitor = open_page(browser, server, links["Shared pivot"].removeprefix(server.http_url))
    assert "Sign in to see “sales”." in visitor.inner_text("main")
    assert visitor.get_attribute("main a", "href") == "/accounts/login/?next=" + quote(
        links["Shared pivot"].removeprefix(server.http_url), safe="/"
    )
    visitor.context.close()

    # Another signed-in user opens the shared view, but not the private one.
    other = open_page(browser, server, links["My pivot"].removeprefix(server.http_url), bob)
    other.wait_for_function(loaded(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
    assert other.inner_text(".perspective-bar .notice").startswith("There is no saved view here by that link")
    assert saved_config(other, TABLE_PAGE)["group_by"] == []
    assert other.locator(".perspective-views a").all_inner_texts() == ["Shared pivot"]
    other.goto(links["Shared pivot"])
    other.wait_for_function(loaded(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
    assert saved_config(other, TABLE_PAGE)["split_by"] == ["product"]
    other.context.close()

    # A template's viewer loads a saved view by name; without access to its table, the
    # viewer says so as for any table; an unknown name is said too.
    carl_page = open_page(browser, server, "/browser/saved/sales/Shared%20pivot/", carl)
    carl_page.wait_for_function(loaded("#v"), timeout=LOAD_TIMEOUT_MS)
    assert saved_config(carl_page, "#v")["group_by"] == ["region"]
    carl_page.context.close()
    visitor = open_page(browser, server, "/browser/saved/sales/Shared%20pivot/")
    visitor.wait_for_function(settled("#v"), timeout=LOAD_TIMEOUT_MS)
    assert status_text(visitor, "#v") == "Sign in to see “sales”."
    visitor.goto(server.http_url + "/browser/saved/sales/My%20pivot/")  # ann's own
    visitor.wait_for_function(settled("#v"), timeout=LOAD_TIMEOUT_MS)
    assert status_text(visitor, "#v") == "There is no saved view “My pivot” of “sales” that you may open."
    visitor.context.close()


def test_a_link_whose_view_the_server_refuses_says_why(browser: Browser, server: DaphneProcess) -> None:
    # ExprTK loops may hold the engine for hours: the server refuses them, however they arrive.
    config = {"expressions": {"spin": "for (var i := 0; i < 10; i += 1) { i }"}, "columns": ["spin"]}
    page = open_page(browser, server, f"/perspective/superstore/?config={encode_view_link(config)}")
    page.wait_for_function(settled(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
    assert page.get_attribute(TABLE_PAGE, "data-perspective-state") == "error"
    assert status_text(page, TABLE_PAGE) == (
        "This view cannot be shown: expression 'spin' uses 'for': loops are not allowed on this table"
    )
    page.context.close()


REGISTRY_ROWS = """
from django.core.files.base import ContentFile
from django_perspective.models import PublishedTable
flights = PublishedTable(name="flights", title="NYC flights 2013", source="file", row_count=336776,
    schema={"year": "integer", "month": "integer", "carrier": "string", "air_time": "float"},
    last_error="KeyError: " + "a long explanation of what went wrong " * 6)
flights.file.save("flights.csv", ContentFile(b"year,month,carrier,air_time\\n2013,1,UA,227\\n"), save=False)
gone = PublishedTable(name="gone", source="file", file="perspective/gone.csv")
orders = PublishedTable(name="orders", source="model", model="auth.User")
PublishedTable.objects.bulk_create([flights, gone, orders])  # no load: the signals do not fire
print(PublishedTable.objects.get(name="flights").pk, PublishedTable.objects.get(name="gone").pk)
"""
FIELD_ROWS = ("file", "model", "filter", "live", "sql", "database", "provider", "fields", "index_column", "row_limit")


def shown_fields(page: Page) -> list[str]:
    return [name for name in FIELD_ROWS if page.locator(f"#id_{name}").is_visible()]


def test_the_admin_shows_what_matters_for_each_source(browser: Browser, server: DaphneProcess, db_env) -> None:
    root = login(db_env, "root", superuser=True)
    flights, gone = in_server_env(db_env, REGISTRY_ROWS).split()
    context = new_context(browser, server.http_url, root)
    context.set_default_timeout(LOAD_TIMEOUT_MS)
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 800})
    console = Console(page)

    page.goto(server.http_url + "/admin/django_perspective/publishedtable/")
    row = page.locator("#result_list tbody tr", has_text="flights")
    assert row.locator("td.field-rows").inner_text() == "336,776"
    error = row.locator("td.field-error span")
    assert error.inner_text().startswith("KeyError: a long explanation")
    assert error.get_attribute("title").count("a long explanation") == 6  # the whole error on hover
    box = error.bounding_box()
    assert box["x"] + box["width"] <= 1280, "the last error is off screen"
    assert row.locator("td.field-live_state img").count() == 0  # files cannot be live: no cross
    orders = page.locator("#result_list tbody tr", has_text="orders")
    assert orders.locator("td.field-live_state img").get_attribute("alt") == "False"

    page.goto(server.http_url + f"/admin/django_perspective/publishedtable/{flights}/change/")
    assert shown_fields(page) == ["file", "fields", "index_column", "row_limit"]
    page.select_option("#id_source", "model")
    assert shown_fields(page) == ["model", "filter", "live", "fields", "index_column", "row_limit"]
    page.select_option("#id_source", "provider")
    assert shown_fields(page) == ["provider"]
    schema = page.locator(".field-schema_table tbody td:first-child").all_inner_texts()
    assert schema == ["year", "month", "carrier", "air_time"]  # column order, as loaded
    assert page.locator(".field-rows .readonly").inner_text() == "336,776"
    link = page.locator(".field-file .file-upload a")
    assert link.get_attribute("href") == f"/admin/django_perspective/publishedtable/{flights}/file/"
    download = context.request.get(server.http_url + link.get_attribute("href"))
    assert download.ok and download.body() == b"year,month,carrier,air_time\n2013,1,UA,227\n"
    assert [e for e in console.errors if "favicon.ico" not in e] == []  # the admin has no icon

    page.goto(server.http_url + f"/admin/django_perspective/publishedtable/{gone}/change/")
    assert page.locator(".field-file .file-upload a").count() == 0
    assert "missing from storage" in page.locator(".field-file .file-upload").inner_text()
    assert context.request.get(server.http_url + f"/admin/django_perspective/publishedtable/{gone}/file/").status == 404
    context.close()
    # Someone who may not view the registry gets no file.
    visitor = browser.new_context()
    response = visitor.request.get(server.http_url + f"/admin/django_perspective/publishedtable/{flights}/file/")
    assert response.url.startswith(server.http_url + "/admin/login/")
    visitor.close()


def test_viewers_and_exports_use_the_tables_title(browser: Browser, server: DaphneProcess) -> None:
    page = open_page(browser, server, "/perspective/superstore/")
    page.wait_for_function(loaded(TABLE_PAGE), timeout=LOAD_TIMEOUT_MS)
    assert page.inner_text("header h1") == "Superstore orders"
    assert saved_config(page, TABLE_PAGE)["title"] == "Superstore orders"
    page.locator(f"{TABLE_PAGE} #export").click()
    menu = page.locator(f"{TABLE_PAGE} perspective-export-menu")
    menu.wait_for(timeout=10_000)
    menu.get_by_text("Superstore orders.csv", exact=True).wait_for(timeout=10_000)  # the file's name
    assert menu.get_by_text("untitled").count() == 0
    page.context.close()
