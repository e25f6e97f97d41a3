"""What the browser side needs from the server: asset URLs, websocket URLs, visible tables,
what a table is called, and what a viewer says when it cannot show one.

Each decision lives in one function so a project (or the access policy) can refine it in one
place: ``websocket_url`` for where a viewer connects and with which credentials,
``visible_tables`` for which tables a user is shown, ``unavailable_message`` for what a
viewer (or a table page) says to a user who gets no table.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.templatetags.static import static

from . import conf
from .databases import is_database_table
from .finders import BUNDLE, BUNDLE_PATH, STYLESHEET, STYLESHEET_PATH

MODULE_PATH = "django_perspective/perspective-django.js"


def asset_urls() -> dict[str, str]:
    """URLs of the wheel's bundle and stylesheet, and of this app's own module.

    ``PERSPECTIVE["ASSETS_URL"]`` (a directory URL) loads the bundle from elsewhere, e.g. a
    CDN that mirrors the same perspective-python version.
    """
    base = conf.get("ASSETS_URL")
    if base:
        base = base if base.endswith("/") else base + "/"
        bundle, stylesheet = base + BUNDLE, base + STYLESHEET
    else:
        bundle, stylesheet = static(BUNDLE_PATH), static(STYLESHEET_PATH)
    return {"bundle": bundle, "stylesheet": stylesheet, "module": static(MODULE_PATH)}


def websocket_path() -> str:
    """The path the consumer is routed at: ``PERSPECTIVE["WEBSOCKET_PATH"]`` or the app's route."""
    configured = conf.get("WEBSOCKET_PATH")
    if configured:
        return configured
    from .routing import websocket_urlpatterns

    for pattern in websocket_urlpatterns:
        if getattr(pattern, "name", None) == "perspective":
            return "/" + str(pattern.pattern).lstrip("^").rstrip("$")
    raise LookupError("django_perspective.routing has no route named 'perspective'")


def websocket_url(
    request: HttpRequest | None, table: str | None = None, *, token: str | bool | None = None
) -> str:
    """The websocket URL a viewer of ``table`` connects to.

    ``ws://`` or ``wss://`` following ``request.is_secure()``, on the request's host. Without
    a request the path alone is returned; ``perspective-django.js`` resolves it against the
    page's own location. A ``token`` is appended as ``?token=``; ``token=True`` signs a
    fresh one for ``table`` and the request's user (``tokens.make_token``), for pages served
    to another origin or embedded where the session cookie does not travel.
    """
    if token is True:
        from .tokens import make_token

        token = make_token([table] if table else [], getattr(request, "user", None))
    path = websocket_path()
    if is_database_table(table):  # its own consumer: the database handler's features differ
        path = path.rstrip("/") + "/db/"
    if request is not None:
        scheme = "wss" if request.is_secure() else "ws"
        url = f"{scheme}://{request.get_host()}{path}"
    else:
        url = path
    if token:
        url += ("&" if "?" in url else "?") + urlencode({"token": token})
    return url


def visible_tables(request: HttpRequest) -> list[str]:
    """The tables ``request.user`` is shown, sorted by name.

    Hosted tables plus code-defined ones not hosted yet (they are hosted when first opened),
    less those the user may not read (``access.py``), the same rule the websocket applies.
    """
    from .access import can_read
    from .api import hosted_tables
    from .tables import declared

    user = getattr(request, "user", None)
    names = set(hosted_tables()) | set(declared.specs)
    return sorted(name for name in names if can_read(user, name))


@dataclass(frozen=True)
class TableDetails:
    name: str
    title: str
    description: str


def table_details(name: str) -> TableDetails:
    """What ``name`` is called: its registry row's title, its declaration's, or its name."""
    from .models import PublishedTable
    from .tables import declared

    row = PublishedTable.objects.filter(name=name).values("title", "description").first() or {}
    spec = declared.specs.get(name)
    title = row.get("title") or (spec.title if spec else "") or name
    description = row.get("description") or (spec.description if spec else "")
    return TableDetails(name, title, description)


def table_exists(name: str) -> bool:
    """Whether ``name`` is declared in code, published in the registry or hosted here."""
    from .api import hosted_tables
    from .models import PublishedTable
    from .tables import declared

    if name in declared.specs or PublishedTable.objects.filter(name=name, published=True).exists():
        return True
    return name in hosted_tables()


def signin_url(request: HttpRequest | None) -> str | None:
    """``LOGIN_URL`` back to this page, for a visitor who is not signed in; None otherwise."""
    user = getattr(request, "user", None)
    if request is None or user is None or user.is_authenticated:
        return None
    from django.contrib.auth.views import redirect_to_login

    return redirect_to_login(request.get_full_path()).url


def unavailable_message(request: HttpRequest | None, table: str, *, missing: bool | None = None) -> str:
    """What a user who gets no ``table`` is told, in a viewer's box or on a table page.

    The server answers "Unknown table" alike for a table that does not exist and one the
    user may not read, so that a name cannot be probed. ``missing`` is for names the page's
    author chose (a template's viewer): True says there is no such table. For names that
    come from a URL, leave it None: the message then does not tell the two apart.
    """
    if missing:
        return f"There is no table “{table}”."
    if signin_url(request) is not None:
        return f"Sign in to see “{table}”."
    if missing is None:
        return f"There is no table “{table}”, or you have no access to it."
    return f"You have no access to “{table}”."


MAX_LINK_CHARS = 16 * 1024


def encode_view_link(config: dict[str, Any]) -> str:
    """A viewer config as the ``?config=`` of a link: base64url of its JSON, unpadded."""
    data = json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_view_link(text: str) -> dict[str, Any]:
    """The viewer config in a link's ``?config=``; ValidationError says what is wrong.

    Only its shape is checked: what the viewer then asks for is checked on the server like
    any other request.
    """
    from .models import clean_view_config

    if len(text) > MAX_LINK_CHARS:
        raise ValidationError(
            f"The link's view settings are {len(text):,} characters long; at most {MAX_LINK_CHARS:,}."
        )
    try:
        config = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise ValidationError("The link's view settings are not readable: copy the whole link.") from None
    return clean_view_config(config)
