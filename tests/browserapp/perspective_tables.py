"""A table whose name and values try to break out of HTML, for the browser escaping test."""

from __future__ import annotations

from typing import Any

from django_perspective.tables import perspective_table

# Closes a script element, opens one, breaks out of both attribute quotes and adds a handler.
EVIL = """</script><script>window.__xss=1</script>"'><img src=x onerror="window.__xss=2">"""


@perspective_table(EVIL, access="public")
def evil() -> dict[str, list]:
    return {"name": [EVIL, "plain"], "n": [1, 2]}


REGIONS = ["North", "South", "East", "West"]
PRODUCTS = ["Chairs", "Desks", "Lamps"]


@perspective_table("sales", access="authenticated", title="Sales by region", description="Signed-in users only.")
def sales() -> dict[str, list]:
    """Deterministic rows for the saved-view tests: 4 regions x 3 products x 5 rows."""
    rows = [(r, p, i) for r in range(4) for p in range(3) for i in range(5)]
    return {
        "region": [REGIONS[r] for r, _, _ in rows],
        "product": [PRODUCTS[p] for _, p, _ in rows],
        "amount": [float(10 * r + p + i) for r, p, i in rows],
    }


def ledger_open(user: Any, name: str) -> bool:
    """Staff may edit the ledger until it is closed (a group named "ledger-closed" exists)."""
    from django.contrib.auth.models import Group

    return bool(user is not None and user.is_staff) and not Group.objects.filter(name="ledger-closed").exists()


@perspective_table("ledger", index="id", access="public", editable=ledger_open)
def ledger() -> dict[str, list]:
    return {"id": [1, 2, 3], "amount": [10.0, 20.0, 30.0]}
