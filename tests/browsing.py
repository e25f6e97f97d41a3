"""What the browser tests share: headless Chromium, console capture, viewer states, screenshots.

Playwright drives the system's ``/usr/bin/chromium``; the browser sends its own Origin, so
the websocket passes ``AllowedHostsOriginValidator`` exactly as in production.

Screenshots go to a temporary directory, or to ``$PERSPECTIVE_SCREENSHOTS`` when set:
``make screenshots`` sets it to ``docs`` to refresh the README's images. ``make test``
never writes into the repository.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from .servers import ROOT

SETTINGS = "tests.settings_browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LOAD_TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1400, "height": 1000}


def state_is(selector: str, *states: str) -> str:
    """JS: the viewer at ``selector`` is in one of ``states`` (data-perspective-state)."""
    return (
        f"{list(states)!r}.includes(document.querySelector({selector!r})"
        "?.getAttribute('data-perspective-state'))"
    )


def loaded(selector: str) -> str:
    return state_is(selector, "loaded")


def status_text(page: Page, selector: str) -> str:
    """What the viewer says in its box ("" when it says nothing)."""
    box = page.locator(f"{selector} > .django-perspective-status p")
    return box.inner_text().strip() if box.count() else ""


def status_link(page: Page, selector: str) -> str | None:
    """The href of the link in the viewer's box (a sign-in link), if any."""
    link = page.locator(f"{selector} > .django-perspective-status a")
    return link.get_attribute("href") if link.count() else None


class Console:
    """Every console error and uncaught exception a page produces."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} at {message.location}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_context(browser: Browser, base_url: str, session: str | None = None) -> BrowserContext:
    """A fresh browser profile, signed in with ``session`` (a sessionid) when given."""
    context = browser.new_context(viewport=VIEWPORT)
    if session:
        context.add_cookies([{"name": "sessionid", "value": session, "url": base_url + "/"}])
    return context


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """Where a README screenshot goes: ``$PERSPECTIVE_SCREENSHOTS`` (repo-relative) or ``tmp_path``."""
    target = os.environ.get("PERSPECTIVE_SCREENSHOTS")
    directory = (ROOT / target) if target else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name
