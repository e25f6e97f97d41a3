"""The registry: tables staff publish from the admin, hosted again by every process on start.

Nothing about a published table lives only in memory: the row says where the data comes
from and who may read it; the status fields say how its last load went.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


class PublishedTable(models.Model):
    SOURCE_FILE = "file"
    SOURCE_MODEL = "model"
    SOURCES = [(SOURCE_FILE, "Uploaded file"), (SOURCE_MODEL, "Django model")]
    ACCESS = [
        ("public", "Anyone"),
        ("authenticated", "Signed-in users"),
        ("staff", "Staff"),
    ]

    name = models.SlugField(
        max_length=100,
        unique=True,
        help_text="The table's name on the websocket (letters, digits, - and _).",
    )
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=SOURCES, default=SOURCE_FILE)
    file = models.FileField(
        upload_to="perspective/",
        blank=True,
        help_text="CSV (UTF-8), JSON (records, columns or one record a line), Arrow IPC/Feather or Parquet.",
    )
    model = models.CharField(max_length=200, blank=True, help_text='"app_label.Model" for a model source.')
    fields = models.CharField(
        max_length=1000, blank=True, help_text="Comma-separated columns; blank for all (concrete fields of a model)."
    )
    index_column = models.CharField(
        max_length=200, blank=True, help_text="Rows with the same value replace each other; a model defaults to its primary key."
    )
    row_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Keep at most this many rows.")
    published = models.BooleanField(default=False)
    access = models.CharField(max_length=20, choices=ACCESS, default="staff", help_text="Who may read the table.")
    editable = models.BooleanField(
        default=False, help_text="Users with the change permission may send updates over the websocket."
    )

    row_count = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    schema = models.JSONField(null=True, blank=True, editable=False)
    last_loaded = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "published table"

    def __str__(self) -> str:
        return self.title or self.name

    @classmethod
    def from_db(cls, db, field_names, values):  # type: ignore[no-untyped-def]
        obj = super().from_db(db, field_names, values)
        obj._hosted_name = obj.name  # to retire the old name when a rename is saved
        return obj

    def field_list(self) -> list[str]:
        return [part.strip() for part in self.fields.split(",") if part.strip()]

    def clean(self) -> None:
        from .tables import registry

        errors: dict[str, str] = {}
        if self.name in registry.specs:
            errors["name"] = f'"{self.name}" is a table defined in code; choose another name.'
        if self.source == self.SOURCE_FILE and not self.file:
            errors["file"] = "Upload a file for a file source."
        if self.source == self.SOURCE_MODEL:
            from django.apps import apps

            try:
                apps.get_model(self.model)
            except (LookupError, ValueError):
                errors["model"] = f'"{self.model}" is not an installed model; use "app_label.Model".'
        if errors:
            raise ValidationError(errors)
        if self.source == self.SOURCE_FILE:
            from .sources import check

            try:
                check(self)
            except ValidationError as exc:
                raise ValidationError({exc.code or "file": exc.messages}) from None
