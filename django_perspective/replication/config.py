"""Where replication's Redis is: a ``PERSPECTIVE["REPLICATION"]`` URL or the channels_redis layer."""

from __future__ import annotations

from typing import Any

try:
    import redis
except ImportError:  # pragma: no cover - redis-py comes with the "redis" extra
    redis = None  # type: ignore[assignment]

from django.conf import settings

from .. import conf


def redis_config() -> tuple[dict[str, Any], str] | None:
    """``(redis.Redis kwargs, key prefix)`` for replication, or None when it is off."""
    setting = conf.get("REPLICATION")
    if setting is False or redis is None:
        return None
    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    layer_config = layer.get("CONFIG", {})
    prefix = layer_config.get("prefix", "asgi")
    if isinstance(setting, str):
        return {"url": setting}, prefix
    if not layer.get("BACKEND", "").startswith("channels_redis."):
        return None
    host = (layer_config.get("hosts") or [("localhost", 6379)])[0]
    if isinstance(host, str):
        return {"url": host}, prefix
    if isinstance(host, dict):
        options = dict(host)
        return ({"url": options.pop("address"), **options} if "address" in options else options), prefix
    return {"host": host[0], "port": host[1]}, prefix


def connect(options: dict[str, Any]) -> redis.Redis:
    """A client for ``redis_config()``'s options, with timeouts so a dead Redis is noticed."""
    options = {"socket_connect_timeout": 5, "health_check_interval": 30, **options}
    url = options.pop("url", None)
    return redis.Redis.from_url(url, **options) if url else redis.Redis(**options)
