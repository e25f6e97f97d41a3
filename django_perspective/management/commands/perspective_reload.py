"""Reload registry tables from their sources; exits non-zero if any fails.

The load runs in this process's engine, so errors show here and the status (rows, last
loaded, last error) is saved on each row. Running servers keep what they host until they
restart.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import publishing
from ...models import PublishedTable


class Command(BaseCommand):
    help = "Reload published tables from their sources (files, models, SQL, code)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="Table names.")
        parser.add_argument("--all", action="store_true", help="Reload every published table.")

    def handle(self, *args: Any, **options: Any) -> None:
        names, every = options["names"], options["all"]
        if bool(names) == every:
            raise CommandError("Give table names or --all.")
        if every:
            rows = list(PublishedTable.objects.filter(published=True))
        else:
            found = {obj.name: obj for obj in PublishedTable.objects.filter(name__in=names)}
            missing = [name for name in names if name not in found]
            if missing:
                raise CommandError(f"No published table named {', '.join(missing)}.")
            unpublished = [name for name in names if not found[name].published]
            if unpublished:
                raise CommandError(f"{', '.join(unpublished)}: not published; publish it first.")
            rows = [found[name] for name in names]
        failed = 0
        for obj in rows:
            if publishing.reload(obj):
                self.stdout.write(f"{obj.name}: reloaded, {obj.row_count:,} rows.")
            else:
                failed += 1
                self.stderr.write(f"{obj.name}: failed: {obj.last_error}")
        if failed:
            raise CommandError(f"{failed} of {len(rows)} tables failed to load.")
        if not rows:
            self.stdout.write("No published tables.")
