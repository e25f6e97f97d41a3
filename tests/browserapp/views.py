from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .perspective_tables import EVIL


def evil_page(request: HttpRequest) -> HttpResponse:
    """The tag fed hostile values everywhere it takes text."""
    return render(
        request, "browserapp/evil.html", {"evil": EVIL, "evil_filter": [["name", "==", EVIL]]}
    )
