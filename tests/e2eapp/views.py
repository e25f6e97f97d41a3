"""Test-only introspection of a running server's engine."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from django_perspective import presence
from django_perspective.engine import get_engine
from django_perspective.tables import declared


def views_free(request: HttpRequest, name: str) -> JsonResponse:
    """Whether no view holds table ``name``: Perspective refuses to delete a table with views.

    The table is hosted again from its loader afterwards, so the probe can be repeated.
    """
    engine = get_engine()

    def probe() -> bool:
        with engine.exclusive():  # no listing may see the table missing in between
            try:
                engine.open_table(name).delete()
            except Exception:  # Perspective's "Cannot delete table with views"
                return False
            declared.host(engine, name)
            return True

    return JsonResponse({"free": engine.run(probe), "connections": presence.count()})
