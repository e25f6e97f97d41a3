"""Which ExprTK expressions a table accepts in its views.

Perspective evaluates a view's expressions with ExprTK once per row, and ExprTK has loops:
one ``for`` of a million iterations on a 100,000-row table holds the engine thread for
hours. A table's ``expressions=`` policy says what its viewers may write:

- ``"safe"`` (the default): expressions without loops - no ``for``, ``while``,
  ``repeat``/``until``, ``break``, ``continue`` and no vector variables (``var v[n]``),
  at most ``MAX_COUNT`` per view and ``MAX_LENGTH`` characters each;
- ``False``: no expressions at all;
- ``"full"``: anything ExprTK accepts, for tables whose viewers are trusted.
"""

from __future__ import annotations

import re
from typing import Literal

Policy = Literal["safe", "full"] | bool

MAX_COUNT = 32
MAX_LENGTH = 4096

# String literals ('...') and column references ("...") may contain any word; strip them
# before looking for statements.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)
_LOOP = re.compile(r"\b(for|while|repeat|until|break|continue)\b", re.I)
_VECTOR = re.compile(r"\bvar\s+[A-Za-z_]\w*\s*\[", re.I)


def validate_policy(policy: object) -> None:
    """Raise ValueError for an ``expressions=`` value this module does not understand."""
    if policy not in ("safe", "full", True, False):
        raise ValueError(f"unknown expressions policy {policy!r}: use 'safe', 'full' or False")


def check(policy: Policy, expressions: dict[str, str]) -> str | None:
    """Return why ``expressions`` (alias -> ExprTK source) are refused, or None."""
    if not expressions:
        return None
    if policy is False:
        return "this table does not accept expressions"
    if policy == "full":
        return None
    if len(expressions) > MAX_COUNT:
        return f"{len(expressions)} expressions: at most {MAX_COUNT} per view"
    for alias, source in expressions.items():
        if len(source) > MAX_LENGTH:
            return f"expression {alias!r} is {len(source)} characters long: at most {MAX_LENGTH}"
        bare = _QUOTED.sub("''", source)
        loop = _LOOP.search(bare)
        if loop:
            return f"expression {alias!r} uses {loop.group(1)!r}: loops are not allowed on this table"
        if _VECTOR.search(bare):
            return f"expression {alias!r} declares a vector: not allowed on this table"
    return None
