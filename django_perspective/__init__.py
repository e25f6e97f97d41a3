"""Serve Perspective tables to ``<perspective-viewer>`` through Django Channels."""

from __future__ import annotations

from typing import Any

__all__ = [
    "HostedTable",
    "TableNotFound",
    "ahost_table",
    "aremove",
    "aupdate",
    "delete_table",
    "get_table",
    "host_table",
    "hosted_tables",
    "live_model_table",
    "perspective_table",
    "remove",
    "replace",
    "start_engine",
    "update",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that listing the app in INSTALLED_APPS does not load the engine.
    if name == "TableNotFound":
        from .engine import TableNotFound

        return TableNotFound
    if name == "live_model_table":
        from .live import live_model_table

        return live_model_table
    if name == "perspective_table":
        from .tables import perspective_table

        return perspective_table
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'django_perspective' has no attribute {name!r}")
