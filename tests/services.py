"""Throwaway PostgreSQL databases and Redis key prefixes for tests against real services."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator

import psycopg
import redis

from .servers import migrate

PG = {"host": os.environ.get("POSTGRES_HOST", "127.0.0.1"), "port": os.environ.get("POSTGRES_PORT", "5432"), "user": os.environ.get("POSTGRES_USER", "postgres")}
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextlib.contextmanager
def postgres_database(settings: str) -> Iterator[dict[str, str]]:
    """A fresh, migrated database; dropped afterwards. Yields the env the settings read."""
    name = f"dp_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {"POSTGRES_DB": name, "POSTGRES_HOST": PG["host"], "POSTGRES_PORT": PG["port"], "POSTGRES_USER": PG["user"]}
    try:
        migrate(env, settings=settings)
        yield env
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_prefix() -> Iterator[dict[str, str]]:
    """A Redis key prefix of its own for one test run; its keys are deleted afterwards."""
    prefix = f"dptest{uuid.uuid4().hex[:10]}"
    try:
        yield {"REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix}
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())
