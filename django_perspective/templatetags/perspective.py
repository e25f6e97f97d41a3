"""``{% perspective_assets %}`` and ``{% perspective_viewer %}``.

::

    {% load perspective %}
    {% perspective_assets %}
    {% perspective_viewer "superstore" plugin="Y Bar" group_by="Region" columns="Sales,Profit" %}

The viewer's table, websocket URL and config travel as JSON in one HTML-escaped attribute,
so no table name or config value can open a tag or a script.
"""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString

from .. import access
from ..browser import (
    asset_urls,
    signin_url,
    table_details,
    table_exists,
    unavailable_message,
    websocket_url,
)
from ..models import SavedView

register = template.Library()

SORT_DIRECTIONS = (
    "col asc abs",
    "col desc abs",
    "asc abs",
    "desc abs",
    "col asc",
    "col desc",
    "asc",
    "desc",
)
DEFAULT_STYLE = "display: block; height: 480px;"


def _json(name: str, value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise template.TemplateSyntaxError(
            f"perspective_viewer: {name}={value!r} is not valid JSON ({exc})."
        ) from None


def _structured(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip()[:1] in ("[", "{")


def _names(name: str, value: Any) -> list[Any]:
    """A list of column names: a list, JSON, or ``"Sales,Profit"``."""
    if _structured(value):
        value = _json(name, value)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise template.TemplateSyntaxError(f"perspective_viewer: {name} must be a list of columns.")


def _sort(value: Any) -> list[list[str]]:
    """``"Sales desc,Region"`` (direction defaults to asc), JSON, or a list of pairs."""
    if _structured(value):
        value = _json("sort", value)
    if not isinstance(value, str):
        return [list(item) for item in value]
    result = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        for direction in SORT_DIRECTIONS:
            if item.endswith(" " + direction):
                result.append([item[: -len(direction) - 1].strip(), direction])
                break
        else:
            result.append([item, "asc"])
    return result


def _aggregates(value: Any) -> dict[str, Any]:
    """``"Sales:sum,Profit:avg"``, JSON, or a dict."""
    if _structured(value):
        value = _json("aggregates", value)
    if isinstance(value, dict):
        return value
    result = {}
    for item in (part.strip() for part in str(value).split(",")):
        column, sep, aggregate = item.rpartition(":")
        if not sep or not column.strip():
            raise template.TemplateSyntaxError(
                f"perspective_viewer: aggregates item {item!r} is not 'column:aggregate'."
            )
        result[column.strip()] = aggregate.strip()
    return result


def _structure(name: str, value: Any) -> Any:
    """A list or dict, given as one or as JSON (``filter``, ``expressions``, ``plugin_config``)."""
    if isinstance(value, str):
        return _json(name, value)
    return value


def _flag(value: Any, name: str = "settings") -> bool:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "open", "yes", "1"):
            return True
        if lowered in ("false", "closed", "no", "0", ""):
            return False
        raise template.TemplateSyntaxError(
            f"perspective_viewer: {name}={value!r}; use true/open or false/closed."
        )
    return bool(value)


def viewer_config(**options: Any) -> dict[str, Any]:
    """The ``viewer.restore()`` config for the tag's keyword arguments (``None`` = unset)."""
    parsers = {
        "columns": lambda v: _names("columns", v),
        "group_by": lambda v: _names("group_by", v),
        "split_by": lambda v: _names("split_by", v),
        "sort": _sort,
        "filter": lambda v: _structure("filter", v),
        "expressions": lambda v: _structure("expressions", v),
        "aggregates": _aggregates,
        "plugin_config": lambda v: _structure("plugin_config", v),
        "settings": _flag,
    }
    config = {}
    for key, value in options.items():
        if value is None:
            continue
        config[key] = parsers[key](value) if key in parsers else str(value)
    return config


@register.simple_tag
def perspective_assets() -> SafeString:
    """The stylesheet, a preload of the bundle, its URL for the module, and the module."""
    urls = asset_urls()
    return format_html(
        '<link rel="stylesheet" href="{}">\n<link rel="modulepreload" href="{}">\n{}\n'
        '<script type="module" src="{}"></script>',
        urls["stylesheet"],
        urls["bundle"],
        json_script({"bundle": urls["bundle"]}, "django-perspective-assets"),
        urls["module"],
    )


def saved_view(view: Any, table: str, user: Any) -> SavedView | None:
    """The saved view ``view`` (a SavedView, or a name) of ``table`` that ``user`` may open.

    By name, the user's own view comes first, then the oldest shared one.
    """
    visible = SavedView.objects.visible_to(user)
    if isinstance(view, SavedView):
        return view if view.table == table and visible.filter(pk=view.pk).exists() else None
    views = visible.filter(table=table, name=str(view))
    mine = views.filter(owner=user) if getattr(user, "is_authenticated", False) else views.none()
    return mine.first() or views.order_by("created", "pk").first()


@register.simple_tag(takes_context=True)
def perspective_viewer(
    context: template.Context,
    table: str,
    *,
    url: str | None = None,
    token: str | bool | None = None,
    id: str | None = None,
    style: str | None = None,
    plugin: str | None = None,
    columns: Any = None,
    group_by: Any = None,
    split_by: Any = None,
    sort: Any = None,
    filter: Any = None,
    expressions: Any = None,
    aggregates: Any = None,
    plugin_config: Any = None,
    theme: str | None = None,
    title: str | None = None,
    settings: Any = None,
    view: Any = None,
    config: Any = None,
    link: Any = False,
) -> SafeString:
    """A ``<perspective-viewer>`` on ``table``, connected by ``perspective-django.js``.

    ``url`` overrides the websocket URL derived from the request; ``token`` is passed to
    ``browser.websocket_url``. Lists are given as ``"a,b"``, a list, or JSON. ``view``
    starts from a saved view (its name, or a SavedView) and ``config`` from a whole
    ``viewer.save()`` dict; the other options override their keys. ``link`` keeps the
    page's address on the viewer's current settings (``?config=``), so it can be shared.
    """
    table = str(table)
    request = context.get("request")
    user = getattr(request, "user", None)
    if url is None:
        url = websocket_url(request, table, token=token)
    base: dict[str, Any] = {"title": table_details(table).title}
    error = None
    if view is not None:
        found = saved_view(view, table, user)
        if found is None:
            error = f"There is no saved view “{view}” of “{table}” that you may open."
        else:
            base.update(found.config)
    if config is not None:
        given = _structure("config", config)
        if not isinstance(given, dict):
            raise template.TemplateSyntaxError(
                "perspective_viewer: config must be a dict (a viewer's save())."
            )
        base.update({key: value for key, value in given.items() if key != "table"})
    options = viewer_config(
        plugin=plugin,
        columns=columns,
        group_by=group_by,
        split_by=split_by,
        sort=sort,
        filter=filter,
        expressions=expressions,
        aggregates=aggregates,
        plugin_config=plugin_config,
        theme=theme,
        title=title,
        settings=settings,
    )
    missing = not table_exists(table)
    payload = {
        "url": url,
        "table": table,
        "config": {**base, **options},
        "editable": access.can_update(user, table),
        "unavailable": unavailable_message(request, table, missing=missing),
        "signin": None if missing else signin_url(request),
        "error": error,
        "link": _flag(link, "link"),
    }
    return format_html(
        '<perspective-viewer{} style="{}" data-django-perspective="{}"></perspective-viewer>',
        format_html(' id="{}"', id) if id else "",
        DEFAULT_STYLE if style is None else style,
        json.dumps(payload, cls=DjangoJSONEncoder),
    )
