"""A table whose name and values try to break out of HTML, for the browser escaping test."""

from __future__ import annotations

from django_perspective.tables import perspective_table

# Closes a script element, opens one, breaks out of both attribute quotes and adds a handler.
EVIL = """</script><script>window.__xss=1</script>"'><img src=x onerror="window.__xss=2">"""


@perspective_table(EVIL, access="public")
def evil() -> dict[str, list]:
    return {"name": [EVIL, "plain"], "n": [1, 2]}
