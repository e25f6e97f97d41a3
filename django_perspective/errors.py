"""Errors about data: one shape for every source, and the one the Arrow checks raise.

A problem a staff user can cause in the registry becomes a ``ValidationError`` whose
``code`` names the form field at fault, so the admin shows it beside that field and
``perspective_publish`` prints ``field: message``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError


def field_error(message: str, field: str) -> ValidationError:
    """``message`` as a form error on ``field`` (``file``, ``sql``, ``fields``, ...)."""
    return ValidationError(message, code=field)


class LoadError(ValueError):
    """Data Perspective cannot load, refused before the engine sees it; names the column when one is at fault."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column
