"""What the browser side needs from the server: asset URLs, websocket URLs, visible tables.

Each decision lives in one function so a project (or the access policy) can refine it in one
place: ``websocket_url`` for where a viewer connects and with which credentials,
``visible_tables`` for which tables a user is shown.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest
from django.templatetags.static import static

from . import conf
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
