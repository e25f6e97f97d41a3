"""The benchmark tables, declared the way a Django project would declare its own."""

from __future__ import annotations

import os

from django_perspective.tables import perspective_table

from ..data import TABLE, TICKS, TICKS_INDEX, bench_table, ticks_schema

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))


@perspective_table(TABLE, access="public")
def bench() -> bytes:
    return bench_table(ROWS)


@perspective_table(TICKS, index=TICKS_INDEX, access="public")
def ticks() -> dict[str, str]:
    return ticks_schema()
