"""List every registry row and every code-defined table, with how its last load went."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils.text import Truncator

from ...models import PublishedTable
from ...tables import declared
from ._output import table


def _policy(value: Any) -> str:
    if value is None:
        return "default"
    return value if isinstance(value, str) else getattr(value, "__name__", "callable")


class Command(BaseCommand):
    help = "List the published (and unpublished) registry tables and the tables defined in code."

    def handle(self, *args: Any, **options: Any) -> None:
        header = ("NAME", "SOURCE", "PUBLISHED", "ACCESS", "ROWS", "LAST LOADED", "LAST ERROR")
        rows = []
        owned = set()
        for obj in PublishedTable.objects.select_related("access_group"):
            owned.add(obj.name)
            rows.append(
                (
                    obj.name,
                    obj.source,
                    "yes" if obj.published else "no",
                    obj.read_policy() or "nobody",
                    "-" if obj.row_count is None else f"{obj.row_count:,}",
                    obj.last_loaded.strftime("%Y-%m-%d %H:%M:%S") if obj.last_loaded else "never",
                    Truncator(obj.last_error).chars(60),
                )
            )
        for name, spec in sorted(declared.specs.items()):
            if name not in owned:  # a provider row above describes the others
                rows.append((name, "code", "yes", _policy(spec.access), "-", "on start", Truncator(spec.error).chars(60)))
        if not rows:
            self.stdout.write("No tables: publish one in the admin or with perspective_publish.")
            return
        self.stdout.write(table(header, sorted(rows)))
