"""The registry: tables staff publish from the admin, hosted again by every process on start,
and the views users save of any table.

Nothing about a published table lives only in memory: the row says where the data comes
from and who may read it; the status fields say how its last load went.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models

from .fields import ColumnTypesField


class PublishedTable(models.Model):
    SOURCE_FILE = "file"
    SOURCE_MODEL = "model"
    SOURCE_SQL = "sql"
    SOURCE_PROVIDER = "provider"
    SOURCE_DATABASE = "database"
    SOURCE_CHOICES = [
        (SOURCE_FILE, "Uploaded file"),
        (SOURCE_MODEL, "Django model"),
        (SOURCE_SQL, "SQL query"),
        (SOURCE_PROVIDER, "Table defined in code"),
        (SOURCE_DATABASE, "Database table or query, not loaded (PostgreSQL)"),
    ]
    # The form fields each source reads (the admin shows only these); the others are ignored.
    SOURCE_FIELDS = {
        SOURCE_FILE: ("file", "fields", "index_column", "row_limit"),
        SOURCE_MODEL: ("model", "filter", "live", "fields", "index_column", "row_limit"),
        SOURCE_SQL: ("sql", "database", "fields", "index_column", "row_limit"),
        SOURCE_PROVIDER: ("provider",),
        # Stays in the database: a model (and filter) or a SELECT on an alias, read per view.
        SOURCE_DATABASE: ("model", "filter", "sql", "database"),
    }
    ACCESS_GROUP = "group"
    ACCESS_PERMISSION = "permission"
    ACCESS_CHOICES = [
        ("public", "Anyone"),
        ("authenticated", "Signed-in users"),
        ("staff", "Staff"),
        (ACCESS_GROUP, "Members of a group"),
        (ACCESS_PERMISSION, "Users with a permission"),
    ]

    name = models.SlugField(
        max_length=100,
        unique=True,
        help_text="The table's name on the websocket (letters, digits, - and _). "
        "For a table defined in code, the name it is declared under.",
    )
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=SOURCE_CHOICES, default=SOURCE_FILE)
    file = models.FileField(
        upload_to="perspective/",
        blank=True,
        help_text="CSV (UTF-8), JSON (records, columns or one record a line), Arrow IPC/Feather or Parquet.",
    )
    model = models.CharField(max_length=200, blank=True, help_text='"app_label.Model" for a model source.')
    filter = models.JSONField(
        default=dict,
        blank=True,
        help_text='Model source: field lookups the rows must match, e.g. {"status": "open", "amount__gte": 10}.',
    )
    sql = models.TextField(
        blank=True,
        help_text="SQL source: one SELECT (or WITH ... SELECT) statement, run in a read-only transaction.",
    )
    database = models.CharField(
        max_length=100, default="default", help_text="SQL source: the database alias (settings.DATABASES) to query."
    )
    provider = models.CharField(
        max_length=100,
        blank=True,
        help_text="Table defined in code: its name in perspective_table(). The code keeps hosting it "
        "(loader and streams as declared); this row decides whether it is published and who may read it. "
        "Name must be the same.",
    )
    fields = models.CharField(
        max_length=1000, blank=True, help_text="Comma-separated columns; blank for all (concrete fields of a model)."
    )
    index_column = models.CharField(
        max_length=200, blank=True, help_text="Rows with the same value replace each other; a model defaults to its primary key."
    )
    row_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Keep at most this many rows.")
    live = models.BooleanField(
        default=False,
        help_text="Model sources only: follow the database - saves and deletes show in viewers as they commit.",
    )
    published = models.BooleanField(default=False)
    access = models.CharField(max_length=20, choices=ACCESS_CHOICES, default="staff", help_text="Who may read the table.")
    access_group = models.ForeignKey(
        "auth.Group",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="For group access. If the group is deleted, nobody may read the table.",
    )
    access_permission = models.CharField(
        max_length=255,
        blank=True,
        help_text='For permission access: "app_label.codename". Checked with user.has_perm(perm) and '
        "user.has_perm(perm, this row), so per-object permission backends work.",
    )
    editable = models.BooleanField(
        default=False, help_text="Users with the change permission may send updates over the websocket."
    )

    row_count = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    schema = ColumnTypesField(null=True, blank=True, editable=False)
    last_loaded = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "published table"
        permissions = [("publish_sql", "Can publish SQL tables")]

    def __str__(self) -> str:
        return self.title or self.name

    @classmethod
    def from_db(cls, db, field_names, values):  # type: ignore[no-untyped-def]
        obj = super().from_db(db, field_names, values)
        obj._hosted_name = obj.name  # to retire the old name when a rename is saved
        return obj

    def field_list(self) -> list[str]:
        return [part.strip() for part in self.fields.split(",") if part.strip()]

    def read_policy(self) -> str | None:
        """The ``access.py`` policy string for this row; None (nobody) when it names no group."""
        if self.access == self.ACCESS_GROUP:
            return f"group:{self.access_group.name}" if self.access_group_id else None
        if self.access == self.ACCESS_PERMISSION:
            return f"perm:{self.access_permission}"
        return self.access

    def _name_errors(self) -> dict[str, str]:
        from .tables import declared

        if self.source == self.SOURCE_PROVIDER:
            if self.provider and self.name != self.provider:
                return {"name": f'A table defined in code keeps its name: set the name to "{self.provider}".'}
            return {}
        from . import databases

        if self.name in declared.specs or databases.declared_in_code(self.name):
            return {"name": f'"{self.name}" is a table defined in code; choose another name.'}
        return {}

    def _access_errors(self) -> dict[str, str]:
        if self.access == self.ACCESS_GROUP and not self.access_group_id:
            return {"access_group": "Choose the group whose members may read the table."}
        if self.access != self.ACCESS_PERMISSION:
            return {}
        app_label, dot, codename = self.access_permission.strip().partition(".")
        if not dot or not app_label or not codename:
            return {"access_permission": 'Give the permission as "app_label.codename", e.g. "sales.view_order".'}
        from django.contrib.auth.models import Permission

        if not Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists():
            return {"access_permission": f'There is no permission "{self.access_permission}".'}
        return {}

    def runs_sql(self) -> bool:
        """Whether the row's rows come from SQL its author wrote (the publish_sql permission's bar)."""
        return self.source == self.SOURCE_SQL or (self.source == self.SOURCE_DATABASE and bool(self.sql.strip()))

    def is_live(self) -> bool:
        """Whether loading this row follows its queryset (``live.follow_queryset``)."""
        return self.live and self.source == self.SOURCE_MODEL

    def _live_errors(self) -> dict[str, str]:
        if self.live and self.source != self.SOURCE_MODEL:
            return {
                "live": "Only a Django model source can follow the database; untick live or choose the model source."
            }
        return {}

    def clean(self) -> None:
        from . import sources

        self.access_permission = self.access_permission.strip()
        errors = {**self._name_errors(), **self._access_errors(), **self._live_errors()}
        if errors:
            raise ValidationError(errors)
        try:
            sources.check(self)
        except ValidationError as exc:
            raise ValidationError({exc.code or NON_FIELD_ERRORS: exc.messages}) from None


MAX_VIEW_CONFIG_BYTES = 64 * 1024


def clean_view_config(config: object) -> dict:
    """A viewer config (``viewer.save()``) fit to store or to restore, without its table.

    Only its shape is checked here; the server checks every request the viewer makes from
    it (schema.py, guard.py) like any other, whoever saved it.
    """
    if not isinstance(config, dict):
        raise ValidationError("A view's settings must be a JSON object.", code="config")
    size = len(json.dumps(config, separators=(",", ":")))
    if size > MAX_VIEW_CONFIG_BYTES:
        raise ValidationError(
            f"A view's settings may take {MAX_VIEW_CONFIG_BYTES:,} bytes; these take {size:,}.", code="config"
        )
    return {key: value for key, value in config.items() if key != "table"}


class SavedViewQuerySet(models.QuerySet):
    def visible_to(self, user: Any) -> models.QuerySet:
        """Views ``user`` may open: their own and the shared ones (access to the table aside)."""
        if user is None or not getattr(user, "is_authenticated", False):
            return self.filter(shared=True)
        return self.filter(models.Q(shared=True) | models.Q(owner=user))


class SavedView(models.Model):
    """A viewer's settings under a name, for one table: restored by ``perspective_viewer view=``.

    Opening one never grants access to its table: the viewer asks for the table like any
    other, and a user who may not read it gets the viewer's "no access" message.
    """

    table = models.CharField(max_length=255, help_text="The table's name on the websocket.")
    name = models.CharField(max_length=100)
    config = models.JSONField(default=dict, blank=True, help_text="What the viewer's save() returned.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="perspective_views"
    )
    shared = models.BooleanField(default=False, help_text="Everyone who may read the table may open it.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = SavedViewQuerySet.as_manager()

    class Meta:
        ordering = ["table", "name"]
        verbose_name = "saved view"
        constraints = [
            models.UniqueConstraint(fields=["table", "owner", "name"], name="django_perspective_view_per_owner")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.table})"

    def clean(self) -> None:
        self.config = clean_view_config(self.config)
