"""Signed, expiring, table-scoped tokens for clients without the session cookie.

A token is Django's ``signing`` of the table names it opens (and the user it was made
for); it is passed as ``?token=`` on the websocket URL. It grants read access to those
tables only, whatever their policy, until it expires - and, when it names a user, only while
that user exists and is active: the consumer checks at connect (4401) and again every
``POLICY_CACHE_SECONDS`` on the open connection (4440). A token made without a signed-in
user names nobody and stands alone until it expires.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core import signing

from . import conf

SALT = "django_perspective.token"


class InvalidToken(Exception):
    """Forged, tampered with or expired."""


@dataclass(frozen=True)
class Grant:
    tables: frozenset[str]
    user_id: Any


def make_token(tables: Iterable[str], user: Any = None) -> str:
    """Sign a token for ``tables`` (valid for ``PERSPECTIVE["TOKEN_MAX_AGE"]`` seconds)."""
    user_id = getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None
    return signing.dumps({"t": sorted(set(tables)), "u": user_id}, salt=SALT, compress=True)


def read_token(token: str, max_age: float | None = None) -> Grant:
    max_age = conf.get("TOKEN_MAX_AGE") if max_age is None else max_age
    try:
        payload = signing.loads(token, salt=SALT, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise InvalidToken("token expired") from exc
    except signing.BadSignature as exc:
        raise InvalidToken("invalid token") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("t"), list):
        raise InvalidToken("invalid token")
    return Grant(frozenset(map(str, payload["t"])), payload.get("u"))
