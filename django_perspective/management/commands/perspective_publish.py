"""Publish a file or a model as a registry table from the command line.

The source is validated and loaded into this process's engine first, so a bad file fails
here with the same message the admin would show, nothing is saved and nothing is copied
into storage. Then the row is saved published (which stores the file). Running servers are
other processes: they host the new table when they restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from ... import publishing
from ...models import PublishedTable
from ._output import describe_errors


class Command(BaseCommand):
    help = "Copy a file into storage (or point at a model) and publish it as a named table."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", help="CSV, JSON, NDJSON, Arrow/Feather or Parquet file.")
        parser.add_argument("--model", help='Publish a model instead: "app_label.Model".')
        parser.add_argument("--fields", default="", help="Comma-separated columns to keep (default: all).")
        parser.add_argument("--filter", default="", help='Model lookups as JSON, e.g. \'{"status": "open"}\'.')
        parser.add_argument("--index", default="", help="Index column (a model defaults to its primary key).")
        parser.add_argument("--limit", type=int, help="Keep at most this many rows.")
        parser.add_argument("--name", help="Table name (default: from the file or model name).")
        parser.add_argument("--title", default="")
        parser.add_argument(
            "--access", default="staff", choices=[value for value, _ in PublishedTable.ACCESS_CHOICES], help="Who may read it."
        )
        parser.add_argument("--group", help="Group name, for --access group.")
        parser.add_argument("--permission", default="", help='"app_label.codename", for --access permission.')
        parser.add_argument("--replace", action="store_true", help="Update the table of that name if it exists.")

    def handle(self, *args: Any, **options: Any) -> None:
        path, model = options["path"], options["model"]
        if bool(path) == bool(model):
            raise CommandError("Give either a file path or --model app_label.Model.")
        if path and not Path(path).is_file():
            raise CommandError(f"No file at {path}.")
        name = options["name"] or slugify(Path(path).stem if path else model.split(".")[-1]).replace("-", "_")
        obj = self._row(name, options["replace"])
        obj.title = options["title"] or obj.title
        obj.fields, obj.index_column, obj.row_limit = options["fields"], options["index"], options["limit"]
        obj.access, obj.access_permission = options["access"], options["permission"]
        obj.access_group = self._group(options["group"])
        if model:
            obj.source, obj.model, obj.filter = PublishedTable.SOURCE_MODEL, model, self._filter(options["filter"])
            self._publish(obj)
            return
        source = Path(path)
        obj.source = PublishedTable.SOURCE_FILE
        previous = obj.file.name
        with source.open("rb") as fh:
            # Checked and hosted from the local file; the row's save copies it into storage,
            # so a file that does not load leaves nothing behind.
            obj.file = File(fh, name=source.name)
            try:
                self._publish(obj)
            except BaseException:
                if obj.file._committed and obj.file.name != previous:  # stored, then the save failed
                    obj.file.delete(save=False)
                raise

    def _row(self, name: str, replace: bool) -> PublishedTable:
        existing = PublishedTable.objects.filter(name=name).first()
        if existing is None:
            return PublishedTable(name=name)
        if not replace:
            raise CommandError(f'A table named "{name}" exists; pass --replace to update it, or choose --name.')
        return existing

    def _group(self, name: str | None) -> Any:
        if not name:
            return None
        from django.contrib.auth.models import Group

        try:
            return Group.objects.get(name=name)
        except Group.DoesNotExist:
            raise CommandError(f'There is no group named "{name}".') from None

    def _filter(self, text: str) -> Any:
        if not text:
            return {}
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CommandError(f"--filter is not valid JSON: {exc}.") from None

    def _publish(self, obj: PublishedTable) -> None:
        try:
            publishing.save_published(obj)
        except ValidationError as exc:
            raise CommandError(f"{obj.name}: not published: {describe_errors(exc)}") from None
        except Exception as exc:  # the engine refused the data: report it like the admin does
            raise CommandError(f"{obj.name}: not published: {type(exc).__name__}: {exc}") from None
        self.stdout.write(f"{obj.name}: published, {obj.row_count:,} rows.")
        self.stdout.write("Running servers host it when they restart.")
