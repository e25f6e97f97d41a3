"""System checks for the ``PERSPECTIVE`` settings dict."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from . import conf


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    value = getattr(settings, "PERSPECTIVE", {})
    if not isinstance(value, dict):
        return [
            Error(
                "The PERSPECTIVE setting must be a dict.",
                hint=f"It is a {type(value).__name__}.",
                id="django_perspective.E001",
            )
        ]
    errors: list[Error | Warning] = []
    for key in sorted(set(value) - set(conf.SETTINGS)):
        errors.append(
            Error(
                f"PERSPECTIVE has an unknown key {key!r}.",
                hint="Known keys: " + ", ".join(sorted(conf.SETTINGS)) + ".",
                id="django_perspective.E002",
            )
        )
    for key, setting in conf.SETTINGS.items():
        types = setting.types
        if types and key in value and (
            not isinstance(value[key], types)
            or (isinstance(value[key], bool) and bool not in types)
            or (isinstance(value[key], (int, float)) and value[key] < 0)
        ):
            errors.append(
                Error(
                    f"PERSPECTIVE[{key!r}] must be a non-negative "
                    + " or ".join(t.__name__ for t in types)
                    + f", not {value[key]!r}.",
                    id="django_perspective.E003",
                )
            )
    if (
        "MAX_RESPONSE_SIZE" not in value
        and getattr(settings, "DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE", None) is None
    ):
        errors.append(
            Warning(
                "Responses over 1 MiB will be refused: daphne's default websocket message "
                "limit applies to outgoing messages too.",
                hint="Set DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE (and pass the same value to "
                "daphne's --websocket-max-message-size), e.g. 256 * 1024 * 1024.",
                id="django_perspective.W001",
            )
        )
    if value.get("REPLICATION") not in (None, False):
        from .replication.config import redis_config

        if redis_config() is None:
            errors.append(
                Warning(
                    "PERSPECTIVE['REPLICATION'] is set but replication is off: it needs redis-py "
                    "and a Redis URL or a channels_redis default channel layer.",
                    hint='pip install "django-perspective[redis]"; see README "Deploying with several processes".',
                    id="django_perspective.W020",
                )
            )
    errors.extend(_proxy_errors(value))
    if "DEFAULT_ACCESS" in value:
        from .access import validate

        try:
            validate(value["DEFAULT_ACCESS"])
        except ValueError as exc:
            errors.append(Error(f"PERSPECTIVE['DEFAULT_ACCESS']: {exc}.", id="django_perspective.E020"))
    return errors


def _proxy_errors(value: dict[str, Any]) -> list[Error]:
    proxies = value.get("TRUSTED_PROXIES", ())
    errors = [
        Error(
            f"PERSPECTIVE['TRUSTED_PROXIES'] has {entry!r}, which is no address, network or \"unix\".",
            hint='e.g. ["127.0.0.1", "10.0.0.0/8", "unix"]',
            id="django_perspective.E030",
        )
        for entry in (proxies if isinstance(proxies, (list, tuple)) else ())
        if not _is_proxy(entry)
    ]
    header = value.get("PROXY_HEADER", "X-Forwarded-For")
    if isinstance(header, str) and not header.strip():
        errors.append(Error("PERSPECTIVE['PROXY_HEADER'] must name a header.", id="django_perspective.E031"))
    return errors


def _is_proxy(entry: Any) -> bool:
    from .proxies import parse_networks

    if not isinstance(entry, str):
        return False
    try:
        parse_networks([entry])
    except ValueError:
        return False
    return True


FINDER = "django_perspective.finders.PerspectiveFinder"


@register(Tags.compatibility, Tags.staticfiles)
def check_browser_assets(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    """The browser bundle must exist and be reachable, and the browser settings well-formed."""
    value = getattr(settings, "PERSPECTIVE", {})
    if not isinstance(value, dict):
        return []
    errors: list[Error | Warning] = []
    assets_url = value.get("ASSETS_URL")
    if assets_url is not None and not (isinstance(assets_url, str) and assets_url):
        errors.append(
            Error(
                f"PERSPECTIVE['ASSETS_URL'] must be a URL string or None, not {assets_url!r}.",
                hint="A directory URL serving perspective-anywidget.js and .css.",
                id="django_perspective.E012",
            )
        )
    path = value.get("WEBSOCKET_PATH")
    if path is not None and not (isinstance(path, str) and path.startswith("/")):
        errors.append(
            Error(
                f"PERSPECTIVE['WEBSOCKET_PATH'] must be a path starting with '/', not {path!r}.",
                id="django_perspective.E013",
            )
        )
    if assets_url:
        return errors
    from .finders import bundle_errors

    errors.extend(bundle_errors())
    if FINDER not in getattr(settings, "STATICFILES_FINDERS", []):
        errors.append(
            Warning(
                f"{FINDER} is not in STATICFILES_FINDERS: {{% perspective_assets %}} points at "
                "the browser bundle, which staticfiles will then neither serve nor collect.",
                hint="Add it after Django's default finders, or set PERSPECTIVE['ASSETS_URL'].",
                id="django_perspective.W010",
            )
        )
    return errors
