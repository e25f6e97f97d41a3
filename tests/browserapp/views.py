from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .perspective_tables import EVIL


def evil_page(request: HttpRequest) -> HttpResponse:
    """The tag fed hostile values everywhere it takes text."""
    return render(
        request, "browserapp/evil.html", {"evil": EVIL, "evil_filter": [["name", "==", EVIL]]}
    )


def viewer_page(request: HttpRequest, name: str) -> HttpResponse:
    """One viewer of any table name, as a page's author would write it."""
    return render(request, "browserapp/viewer.html", {"table": name, "settings": "settings" in request.GET})


def saved_page(request: HttpRequest, name: str, view: str) -> HttpResponse:
    """One viewer of ``name`` starting from the saved view called ``view``."""
    return render(request, "browserapp/saved.html", {"table": name, "view": view})
