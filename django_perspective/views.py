"""Optional pages: the tables a user may see, and a full-page viewer per table.

Include them with ``path("perspective/", include("django_perspective.urls"))``; copy the
templates under ``templates/django_perspective/`` to restyle them.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from .browser import visible_tables


def table_list(request: HttpRequest) -> HttpResponse:
    return render(
        request, "django_perspective/table_list.html", {"tables": visible_tables(request)}
    )


def table_viewer(request: HttpRequest, name: str) -> HttpResponse:
    """404 for tables the user may not see, so the page does not confirm they exist."""
    if name not in visible_tables(request):
        raise Http404("No such table.")
    return render(request, "django_perspective/table_viewer.html", {"table": name})
