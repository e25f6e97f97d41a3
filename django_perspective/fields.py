"""Model fields of the registry that Django does not have."""

from __future__ import annotations

from typing import Any

from django.db import models


class ColumnTypesField(models.JSONField):
    """``{column: type}`` in the table's column order.

    Stored as ``[[column, type], ...]``: a JSON object has no order, and PostgreSQL's jsonb
    sorts its keys. Rows saved as an object still read back, in the order stored.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        value = super().from_db_value(value, expression, connection)
        return dict(value) if isinstance(value, list) else value

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            value = [[column, kind] for column, kind in value.items()]
        return super().get_prep_value(value)
