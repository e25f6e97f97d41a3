"""Who may read, and who may update, a hosted table.

A policy is one of:

- ``"public"``, ``"authenticated"``, ``"staff"``, ``"superuser"``;
- ``"group:<name>"``: members of that Django group;
- ``"perm:<app_label.codename>"``: ``user.has_perm(perm)``, and ``user.has_perm(perm, obj)``
  where the table comes from a registry row, so per-object backends (django-guardian) work;
- a callable ``policy(user, table_name) -> bool``;
- ``None``: nobody (the default for ``editable``).

Policies come from the table's declaration (``perspective_table(..., access=, editable=)``,
``host_table(..., access=, editable=)``), then from the registry model when one is
installed, then ``PERSPECTIVE["DEFAULT_ACCESS"]``. A registry row for a code-defined table
(``source="provider"``) overrides its declared read policy; an unpublished row lets nobody
read its table. These checks may touch the database:
call them from sync code, or through ``database_sync_to_async``.

Registry rows are read once per table per ``memo_seconds()`` for the whole process, not
once per connection: every open connection re-checks its tables each
``POLICY_CACHE_SECONDS``, and a thousand viewers must not mean hundreds of queries a
second. A connection trusts a decision for the rest of the period
(``decision_seconds()``), so a change made anywhere still reaches it within
``POLICY_CACHE_SECONDS``; a row saved or deleted in this process is re-read at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models.signals import post_delete, post_save

from . import conf
from . import expressions as expression_policy

Policy = str | Callable[[Any, str], bool] | None

NAMED = ("public", "authenticated", "staff", "superuser")


@dataclass(frozen=True)
class TablePolicy:
    read: Policy
    update: Policy = None
    obj: Any = None
    expressions: expression_policy.Policy = "safe"


_hosted: dict[str, TablePolicy] = {}
_in_code: dict[str, TablePolicy] = {}


def declare(name: str, access: Policy, editable: Policy = None, expressions: expression_policy.Policy = "safe") -> None:
    """Record the policy of a table hosted at run time (``host_table``, ``follow_queryset``)."""
    validate(access)
    validate(editable)
    expression_policy.validate_policy(expressions)
    _hosted[name] = TablePolicy(access, editable, expressions=expressions)


def declare_code_table(
    name: str, access: Policy, editable: Policy = None, expressions: expression_policy.Policy = "safe"
) -> None:
    """Record the policy of a table declared in code (``perspective_table``, ``live_model_table``).

    A registry row of source ``provider`` for it overrides the read policy.
    """
    _in_code[name] = TablePolicy(access, editable, expressions=expressions)


def expressions_for(name: str) -> expression_policy.Policy:
    """The table's ``expressions=`` policy; "safe" unless its declaration says otherwise.

    Declarations only: no database access, so the guard may ask on every make_view.
    """
    declared = _in_code.get(name) or _hosted.get(name)
    return declared.expressions if declared is not None else "safe"


def withdraw_code_table(name: str) -> None:
    """Drop the code's policy for ``name`` (its declaration was withdrawn)."""
    _in_code.pop(name, None)


def validate(policy: Policy) -> None:
    """Raise ValueError for a policy string this module does not understand."""
    if policy is None or callable(policy):
        return
    if isinstance(policy, str) and (
        policy in NAMED
        or (policy.startswith("group:") and len(policy) > 6)
        or (policy.startswith("perm:") and "." in policy)
    ):
        return
    raise ValueError(
        f"unknown access policy {policy!r}: use public, authenticated, staff, superuser, "
        "group:<name>, perm:<app_label.codename>, a callable or None"
    )


def nobody(user: Any, name: str) -> bool:
    """The read policy of an unpublished registry row, or of a group access whose group is gone."""
    return False


def policy_for(name: str) -> TablePolicy:
    in_code = _in_code.get(name)
    if in_code is not None:
        # A registry row for a code-defined table (source "provider") decides who reads it.
        declared = _published(name, declared=in_code) or in_code
    else:
        declared = _hosted.get(name) or _published(name)
    if declared is None:
        return TablePolicy(conf.get("DEFAULT_ACCESS"))
    if declared.read is None:
        return TablePolicy(conf.get("DEFAULT_ACCESS"), declared.update, declared.obj)
    return declared


def _published(name: str, declared: TablePolicy | None = None) -> TablePolicy | None:
    """The policy a registry row gives ``name``: its access if published, else nobody.

    For a code-defined table (``declared``, the code's policy) only a provider row counts,
    and updates stay as the code declares them.
    """
    from django.apps import apps

    try:
        model = apps.get_model("django_perspective", "PublishedTable")
    except LookupError:
        return None
    row = _registry_row(model, name, provider_only=declared is not None)
    if row is None:
        return None
    if not row.published:
        return TablePolicy(nobody, obj=row)
    read = row.read_policy() or nobody
    if declared is not None:
        return TablePolicy(read, declared.update, obj=row)
    editable = "perm:django_perspective.change_publishedtable" if row.editable else None
    return TablePolicy(read, editable, obj=row)


_rows: dict[tuple[str, bool], tuple[float, Any]] = {}  # (name, provider only) -> (read at, row or None)


def memo_seconds() -> float:
    """How long the process reuses a registry row it read: a tenth of the period, at most 0.5 s."""
    return min(0.5, max(conf.get("POLICY_CACHE_SECONDS"), 0.0) / 10)


def decision_seconds() -> float:
    """How long a connection trusts an access decision: the period less the row memo's life."""
    return max(conf.get("POLICY_CACHE_SECONDS") - memo_seconds(), 0.0)


def _registry_row(model: Any, name: str, provider_only: bool) -> Any:
    key = (name, provider_only)
    now = time.monotonic()
    hit = _rows.get(key)
    if hit is not None and now - hit[0] < memo_seconds():
        return hit[1]
    rows = model.objects.filter(name=name).select_related("access_group")
    if provider_only:
        rows = rows.filter(source=model.SOURCE_PROVIDER)
    row = rows.first()
    _rows[key] = (now, row)
    return row


def forget_rows(**_kwargs: Any) -> None:
    """A registry row, or a group rows name, changed in this process: read rows afresh."""
    _rows.clear()


for _signal in (post_save, post_delete):
    for _sender in ("django_perspective.PublishedTable", "auth.Group"):
        _signal.connect(forget_rows, sender=_sender, dispatch_uid=f"django_perspective.access.{_signal is post_save}.{_sender}")


def allows(policy: Policy, user: Any, name: str, obj: Any = None) -> bool:
    if policy is None:
        return False
    if callable(policy):
        return bool(policy(user, name))
    if policy == "public":
        return True
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if policy == "authenticated":
        return True
    if policy == "staff":
        return bool(user.is_staff)
    if policy == "superuser":
        return bool(user.is_superuser)
    if policy.startswith("group:"):
        return user.groups.filter(name=policy[6:]).exists()
    if policy.startswith("perm:"):
        perm = policy[5:]
        return user.has_perm(perm) or (obj is not None and user.has_perm(perm, obj))
    return False


def can_read(user: Any, name: str, granted: frozenset[str] = frozenset()) -> bool:
    """Whether ``user`` may read ``name``; ``granted`` names come from a signed token.

    A token stands in for the table's policy, but not for an unpublished registry row:
    withdrawing a table withdraws the tokens issued for it.
    """
    policy = policy_for(name)
    if name in granted:
        return policy.read is not nobody
    return allows(policy.read, user, name, policy.obj)


def can_update(user: Any, name: str) -> bool:
    policy = policy_for(name)
    return allows(policy.read, user, name, policy.obj) and allows(policy.update, user, name, policy.obj)
