"""Optional pages: the tables a user may see, and a full-page viewer per table with its
saved views and a link to the exact view on screen.

Include them with ``path("perspective/", include("django_perspective.urls"))``; copy the
templates under ``templates/django_perspective/`` to restyle them.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from .browser import decode_view_link, signin_url, table_details, unavailable_message, visible_tables
from .models import SavedView, clean_view_config

# What a table page starts from; a saved view or a link's settings override it.
PAGE_CONFIG = {"theme": "Pro Dark", "settings": True}
MAX_TABLE_NAME = SavedView._meta.get_field("table").max_length


class SaveViewForm(forms.Form):
    name = forms.CharField(max_length=SavedView._meta.get_field("name").max_length)
    shared = forms.BooleanField(required=False)
    config = forms.CharField(widget=forms.HiddenInput)

    def clean_config(self) -> dict[str, Any]:
        try:
            config = json.loads(self.cleaned_data["config"])
        except ValueError:
            raise ValidationError("The view's settings did not arrive: save again with scripts on.") from None
        return clean_view_config(config)


def table_list(request: HttpRequest) -> HttpResponse:
    tables = [table_details(name) for name in visible_tables(request)]
    context = {"tables": tables, "signin": signin_url(request)}
    return render(request, "django_perspective/table_list.html", context)


def table_viewer(request: HttpRequest, name: str) -> HttpResponse:
    """A table the user may not see gets a 404 that does not confirm it exists."""
    if name not in visible_tables(request):
        context = {"table": name, "message": unavailable_message(request, name), "signin": signin_url(request)}
        return render(request, "django_perspective/table_unavailable.html", context, status=404)
    if request.method == "POST":
        return _save_view(request, name)
    return _page(request, name)


def _page(
    request: HttpRequest, name: str, form: SaveViewForm | None = None, status: int = 200
) -> HttpResponse:
    views = SavedView.objects.visible_to(request.user).filter(table=name).select_related("owner")
    config, notice, opened = dict(PAGE_CONFIG), "", None
    if "config" in request.GET:
        try:
            config.update(decode_view_link(request.GET["config"]))
        except ValidationError as exc:
            notice, status = f"{exc.messages[0]} Showing the table as it opens by default.", 400
    elif "view" in request.GET:
        opened = views.filter(pk=request.GET["view"]).first() if request.GET["view"].isdigit() else None
        if opened is None:
            notice, status = "There is no saved view here by that link that you may open.", 404
        else:
            config.update(opened.config)
    context = {
        "table": table_details(name),
        "views": views,
        "opened": opened,
        "config": config,
        "notice": notice,
        "form": form or SaveViewForm(initial={"name": opened.name if opened else ""}),
        "signin": signin_url(request),
        "savable": len(name) <= MAX_TABLE_NAME,
    }
    return render(request, "django_perspective/table_viewer.html", context, status=status)


def _save_view(request: HttpRequest, name: str) -> HttpResponse:
    """Save (or replace) the user's view of this name, or delete one of theirs."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    page = reverse("django_perspective:table_viewer", args=[name])
    doomed = request.POST.get("delete", "")
    if doomed:
        if doomed.isdigit():
            SavedView.objects.filter(pk=doomed, owner=request.user, table=name).delete()
        return HttpResponseRedirect(page)
    form = SaveViewForm(request.POST)
    if form.is_valid() and len(name) > MAX_TABLE_NAME:
        form.add_error(None, f"Views are saved only for table names of at most {MAX_TABLE_NAME} characters.")
    if not form.is_valid():
        return _page(request, name, form, status=400)
    view, _ = SavedView.objects.update_or_create(
        table=name,
        owner=request.user,
        name=form.cleaned_data["name"],
        defaults={"config": form.cleaned_data["config"], "shared": form.cleaned_data["shared"]},
    )
    return HttpResponseRedirect(f"{page}?view={view.pk}")
