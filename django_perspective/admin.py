"""The registry in Django's admin: publish files, models, SQL queries and code-defined tables.

Saving a row loads and hosts it in this process's engine once the transaction commits
(``publishing.py``); the page then says how the load went. The actions do the same for
many rows and report on each. SQL rows can only be saved, changed or acted on by users
with ``django_perspective.publish_sql``: a query reads whatever the database user may read.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_value
from django.contrib.admin.widgets import AdminFileWidget
from django.core.exceptions import PermissionDenied
from django.db import connections, router, transaction
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from . import publishing
from .models import PublishedTable, SavedView

SQL_PERMISSION = "django_perspective.publish_sql"


def may_publish_sql(user: Any) -> bool:
    return bool(user and user.has_perm(SQL_PERMISSION))


def _model_refusal(user: Any, label: str) -> str | None:
    """Why ``user`` may not publish model ``label``: publishing shows its rows to others.

    Without this, anyone who may edit published tables could publish ``auth.User`` to
    the public. The model's own view permission is the bar.
    """
    from django.apps import apps
    from django.contrib.auth import get_permission_codename

    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        return None  # the model's own validation names the problem
    perm = f"{model._meta.app_label}.{get_permission_codename('view', model._meta)}"
    if user is not None and user.has_perm(perm):
        return None
    return f'Publishing {model._meta.label} needs permission to view it ("{perm}").'


def _declared_tables() -> list[tuple[str, str]]:
    from .tables import declared

    return [("", "---------"), *((name, name) for name in sorted(declared.specs))]


def _database_aliases() -> list[tuple[str, str]]:
    return [(alias, alias) for alias in connections]


class PublishedTableForm(forms.ModelForm):
    """The model's own validation (``sources.check``) with the user's SQL permission first."""

    user: Any = None  # set per request by PublishedTableAdmin.get_form
    provider = forms.ChoiceField(
        choices=_declared_tables,
        required=False,
        help_text=PublishedTable._meta.get_field("provider").help_text,
    )
    database = forms.ChoiceField(
        choices=_database_aliases,
        initial="default",
        help_text=PublishedTable._meta.get_field("database").help_text,
    )

    class Meta:
        model = PublishedTable
        fields = "__all__"
        widgets = {"sql": forms.Textarea(attrs={"rows": 8, "cols": 80, "spellcheck": "false"})}
        error_messages = {"file": {"empty": "The file is empty.", "invalid": "Upload a file."}}

    def clean_filter(self) -> Any:
        return self.cleaned_data.get("filter") or {}  # an emptied box means no filter, not NULL

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        source = cleaned.get("source")
        with_sql = PublishedTable(source=source, sql=cleaned.get("sql") or "").runs_sql()
        if with_sql and not may_publish_sql(self.user):
            self.add_error("source", 'Publishing an SQL query needs the "Can publish SQL tables" permission.')
        if source in (PublishedTable.SOURCE_MODEL, PublishedTable.SOURCE_DATABASE) and cleaned.get("model"):
            refusal = _model_refusal(self.user, cleaned["model"])
            if refusal:
                self.add_error("model", refusal)
        return cleaned

    def _post_clean(self) -> None:
        # The model's validation checks the source (an SQL one runs the query with LIMIT 0):
        # not when the form already refused it, nor for a user who may not publish it.
        if self.has_error("source") or self.has_error("file") or self.has_error("model"):
            return
        super()._post_clean()


class UploadedFileWidget(AdminFileWidget):
    """Links the current upload to the admin's own download view, or to nothing when it is gone.

    ``MEDIA_URL`` is often not served at all (the demo does not), so the file's own URL
    would be a broken link; uploads are data, and the admin checks who may read them.
    """

    template_name = "admin/django_perspective/publishedtable/file_input.html"
    download_url: str | None = None  # set per object by PublishedTableAdmin.get_form

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        present = bool(value) and getattr(value, "name", None) and value.storage.exists(value.name)
        context["widget"]["download_url"] = self.download_url if present else None
        return context


class LoadErrorFilter(admin.SimpleListFilter):
    title = "last load"
    parameter_name = "load"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("failed", "Failed"), ("ok", "Succeeded"), ("never", "Never loaded")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "failed":
            return queryset.exclude(last_error="")
        if self.value() == "ok":
            return queryset.filter(last_error="", last_loaded__isnull=False)
        if self.value() == "never":
            return queryset.filter(last_error="", last_loaded__isnull=True)
        return queryset


@admin.register(PublishedTable)
class PublishedTableAdmin(admin.ModelAdmin):
    form = PublishedTableForm
    # The last error comes early: the list is wide, and it is what needs attention.
    list_display = ("name", "title", "published", "error", "source", "live_state", "readers", "rows", "last_loaded")
    list_filter = ("published", "source", "access", LoadErrorFilter)
    search_fields = ("name", "title", "description")
    readonly_fields = ("rows", "last_loaded", "last_error", "schema_table")
    actions = ("publish_tables", "unpublish_tables", "reload_tables")
    fieldsets = (
        (None, {"fields": ("name", "title", "description", "published")}),
        (
            "Source",
            {
                "description": "Fill in the fields of the chosen source; the others are ignored.",
                "fields": (
                    "source",
                    "file",
                    ("model", "filter"),
                    "live",
                    ("sql", "database"),
                    "provider",
                    "fields",
                    "index_column",
                    "row_limit",
                ),
            },
        ),
        ("Access", {"fields": ("access", "access_group", "access_permission", "editable")}),
        ("Status", {"fields": ("rows", "last_loaded", "last_error", "schema_table")}),
    )

    class Media:
        js = ["django_perspective/admin-source-fields.js"]

    @admin.display(description="readers", ordering="access")
    def readers(self, obj: PublishedTable) -> str:
        if obj.access == PublishedTable.ACCESS_GROUP:
            return f"group {obj.access_group.name}" if obj.access_group_id else "nobody (group deleted)"
        if obj.access == PublishedTable.ACCESS_PERMISSION:
            return f"permission {obj.access_permission}"
        return obj.get_access_display()

    @admin.display(description="last error")
    def error(self, obj: PublishedTable) -> str:
        if not obj.last_error:
            return ""
        return format_html(
            '<span class="errornote" title="{}">{}</span>', obj.last_error, Truncator(obj.last_error).chars(60)
        )

    @admin.display(description="live", ordering="live")
    def live_state(self, obj: PublishedTable) -> str:
        """A tick or a cross for model sources; the empty mark for the sources that cannot be live."""
        if obj.source != PublishedTable.SOURCE_MODEL:
            return self.get_empty_value_display()
        return display_for_value(obj.live, self.get_empty_value_display(), boolean=True)

    @admin.display(description="rows", ordering="row_count")
    def rows(self, obj: PublishedTable) -> str:
        return "" if obj.row_count is None else f"{obj.row_count:,}"

    @admin.display(description="schema")
    def schema_table(self, obj: PublishedTable) -> str:
        if not obj.schema:
            return "Not loaded yet."
        return format_html(
            '<table><thead><tr><th>column</th><th>type</th></tr></thead><tbody>{}</tbody></table>',
            format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", obj.schema.items()),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("access_group")

    def _may_edit(self, request: HttpRequest, obj: PublishedTable | None) -> bool:
        return obj is None or not obj.runs_sql() or may_publish_sql(request.user)

    def has_change_permission(self, request: HttpRequest, obj: PublishedTable | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._may_edit(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: PublishedTable | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self._may_edit(request, obj)

    def get_form(self, request: HttpRequest, obj: PublishedTable | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        form = type(form.__name__, (form,), {"user": request.user})
        if "file" in form.base_fields:  # after the subclass: its metaclass makes the fields again
            widget = UploadedFileWidget()
            if obj is not None:
                widget.download_url = reverse("admin:django_perspective_publishedtable_file", args=[obj.pk])
            form.base_fields["file"].widget = widget
        return form

    def get_urls(self) -> list[Any]:
        download = path(
            "<path:object_id>/file/",
            self.admin_site.admin_view(self.download_file),
            name="django_perspective_publishedtable_file",
        )
        return [download, *super().get_urls()]

    def download_file(self, request: HttpRequest, object_id: str) -> FileResponse:
        """The row's uploaded file, for those who may view the row."""
        obj = self.get_object(request, object_id)
        if obj is None or not obj.file:
            raise Http404("No uploaded file.")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        if not obj.file.storage.exists(obj.file.name):
            raise Http404("The uploaded file is missing from storage.")
        return FileResponse(obj.file.open("rb"), as_attachment=True, filename=obj.file.name.rpartition("/")[2])

    def save_model(self, request: HttpRequest, obj: PublishedTable, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        request._perspective_saved = obj  # reported once the transaction has committed

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        response = super().changeform_view(request, object_id, form_url, extra_context)
        saved = getattr(request, "_perspective_saved", None)
        connection = transaction.get_connection(router.db_for_write(PublishedTable))
        if saved is not None and not connection.in_atomic_block:  # else the load runs after this request
            saved.refresh_from_db()
            if saved.published:
                self._report(request, saved, saved.last_error == "", "published")
        return response

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False, change: bool = False, form_url: str = "", obj: PublishedTable | None = None) -> HttpResponse:
        context["perspective_preview"] = bool(obj is not None and obj.published and obj.last_loaded)
        context["perspective_source_fields"] = PublishedTable.SOURCE_FIELDS  # which rows to show per source
        # Editors preview with a token for this table, whatever its access; viewers with their own access.
        context["perspective_preview_token"] = self.has_change_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _report(self, request: HttpRequest, obj: PublishedTable, ok: bool, done: str) -> None:
        if ok:
            rows = f"{obj.row_count:,} row{'s' if obj.row_count != 1 else ''}"
            self.message_user(request, f'"{obj.name}": {done}, {rows}.', messages.SUCCESS)
        else:
            self.message_user(request, f'"{obj.name}": could not be loaded: {obj.last_error}', messages.ERROR)

    def _allowed(self, request: HttpRequest, queryset: QuerySet) -> list[PublishedTable]:
        """The rows this user may act on; the others are named in a message."""
        rows = list(queryset)
        refused = ", ".join(f'"{obj.name}"' for obj in rows if not self._may_edit(request, obj))
        if refused:
            self.message_user(
                request,
                f'{refused}: SQL tables need the "Can publish SQL tables" permission; left as they were.',
                messages.ERROR,
            )
        return [obj for obj in rows if self._may_edit(request, obj)]

    @admin.action(description="Publish selected tables (load and host them)", permissions=["change"])
    def publish_tables(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in self._allowed(request, queryset):
            self._report(request, obj, publishing.publish(obj), "published")

    @admin.action(description="Unpublish selected tables", permissions=["change"])
    def unpublish_tables(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in self._allowed(request, queryset):
            was = obj.published
            publishing.unpublish(obj)
            self.message_user(request, f'"{obj.name}": {"unpublished" if was else "was not published"}.', messages.SUCCESS)

    @admin.action(description="Reload selected tables from their source", permissions=["change"])
    def reload_tables(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in self._allowed(request, queryset):
            if not obj.published:
                self.message_user(request, f'"{obj.name}": not published; publish it to load it.', messages.WARNING)
                continue
            self._report(request, obj, publishing.reload(obj), "reloaded")


@admin.register(SavedView)
class SavedViewAdmin(admin.ModelAdmin):
    """Views users saved on the table pages; an admin may share, rename or delete them."""

    list_display = ("name", "table", "owner", "shared", "updated")
    list_filter = ("shared", "table")
    search_fields = ("name", "table", "owner__username")
    raw_id_fields = ("owner",)
    readonly_fields = ("created", "updated")
