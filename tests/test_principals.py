"""Who an open connection serves, read again from the database (``principals.current``)."""

from __future__ import annotations

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session

from django_perspective.principals import current

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return session.session_key


def test_a_signed_in_user_comes_back_fresh_with_its_permissions_read_again():
    user = User.objects.create_user("ann")
    key = signed_in(user)
    assert not user.has_perm("auth.view_group")  # fills Django's permission cache on this object
    user.user_permissions.add(Permission.objects.get(content_type__app_label="auth", codename="view_group"))
    assert not user.has_perm("auth.view_group")  # the long-lived object never learns
    fresh = current(user, key)
    assert fresh is not user and fresh.pk == user.pk
    assert fresh.has_perm("auth.view_group")


@pytest.mark.parametrize(
    "change",
    ["deactivate", "delete user", "log out", "change password", "other user's session"],
)
def test_a_principal_that_is_gone_is_none(change):
    user = User.objects.create_user("ann", password="old")
    key = signed_in(user)
    if change == "deactivate":
        User.objects.filter(pk=user.pk).update(is_active=False)
    elif change == "delete user":
        User.objects.filter(pk=user.pk).delete()
    elif change == "log out":
        Session.objects.filter(session_key=key).delete()
    elif change == "change password":
        user.set_password("new")
        user.save()
    else:
        key = signed_in(User.objects.create_user("bob"))
    assert current(user, key) is None


def test_a_stale_session_hash_is_read_but_the_session_is_left_alone():
    user = User.objects.create_user("ann", password="old")
    key = signed_in(user)
    user.set_password("new")
    user.save()
    assert current(user, key) is None
    assert Session.objects.filter(session_key=key).exists()  # a request, not this check, flushes it


def test_anonymous_stays_anonymous_and_a_token_user_must_be_active():
    anonymous = AnonymousUser()
    assert current(anonymous, None) is anonymous
    token_user = User.objects.create_user("tok")
    assert current(anonymous, None, token_user.pk) is anonymous
    User.objects.filter(pk=token_user.pk).update(is_active=False)
    assert current(anonymous, None, token_user.pk) is None
    assert current(anonymous, None, 987654) is None


def test_a_user_without_a_session_is_reloaded_by_primary_key():
    user = User.objects.create_user("ann")
    assert current(user, None).pk == user.pk
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert current(user, None) is None
