"""Who an open connection serves, read again from the database while it stays open.

A websocket outlives the request that signed its user in: the user may log out (the
session row goes), be deactivated or deleted, change password (the session's auth hash no
longer matches), or lose permissions. ``current`` answers with a freshly loaded user - so
``has_perm`` reads permissions again instead of the cache Django keeps on a user object -
or None when the connection's principal is gone. It only reads: unlike
``django.contrib.auth.get_user`` it never flushes or cycles a session. Call it from sync
code or through ``database_sync_to_async``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.utils.crypto import constant_time_compare


def current(user: Any, session_key: str | None, token_user_id: Any = None) -> Any | None:
    """``user`` as the database has it now, or None when the connection must close.

    A user signed in through ``session_key`` must still be that session's active user with
    a matching auth hash; one put in the scope some other way (no session) must still exist
    and be active. An anonymous user stays as it is. ``token_user_id``, the user a signed
    token was made for, must still exist and be active.
    """
    if token_user_id is not None and active_user(token_user_id) is None:
        return None
    if user is None or not getattr(user, "is_authenticated", False):
        return user
    if session_key is None:
        return active_user(user.pk)
    return session_user(session_key, user.pk)


def active_user(pk: Any) -> Any | None:
    """The active user with primary key ``pk``, freshly loaded, or None."""
    fresh = get_user_model()._default_manager.filter(pk=pk).first()
    return fresh if fresh is not None and fresh.is_active else None


def session_user(session_key: str, pk: Any) -> Any | None:
    """The user session ``session_key`` signs in, if it is still user ``pk`` and active."""
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()  # {} once deleted or expired
    backend_path = data.get(BACKEND_SESSION_KEY)
    if SESSION_KEY not in data or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    if get_user_model()._meta.pk.to_python(data[SESSION_KEY]) != pk:
        return None
    fresh = load_backend(backend_path).get_user(pk)
    if fresh is None or not getattr(fresh, "is_active", True):
        return None
    if hasattr(fresh, "get_session_auth_hash") and not _hash_matches(fresh, data.get(HASH_SESSION_KEY)):
        return None
    return fresh


def _hash_matches(user: Any, session_hash: str | None) -> bool:
    """Django's session verification: the password (or a fallback secret) is unchanged."""
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    fallbacks = getattr(user, "get_session_auth_fallback_hash", lambda: ())()
    return any(constant_time_compare(session_hash, fallback) for fallback in fallbacks)
