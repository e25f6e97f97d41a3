"""Tables only the end-to-end tests need; each is declared only when its variable is set."""

from __future__ import annotations

import os

from django_perspective.tables import perspective_table

BIG_ROWS = int(os.environ.get("E2E_BIG_ROWS", "0"))

if BIG_ROWS:

    @perspective_table("big", access="public")
    def big() -> bytes:
        """``BIG_ROWS`` rows of Arrow: ~56 bytes a row, built without Python lists."""
        import pyarrow as pa
        import pyarrow.compute as pc

        ids = pa.array(range(BIG_ROWS), type=pa.int64())
        table = pa.table(
            {
                "id": ids,
                "key": pc.cast(pc.bit_wise_and(ids, 0x3FFFF), pa.string()),
                "a": pc.multiply(pc.cast(ids, pa.float64()), 0.5),
                "b": pc.multiply(pc.cast(ids, pa.float64()), 1.5),
                "c": pc.cast(pc.bit_wise_and(ids, 0xFFFF), pa.float64()),
                "d": pc.cast(pc.bit_wise_and(ids, 0xFF), pa.float64()),
            }
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()


LEAK_ROWS = 200_000


@perspective_table("leak", index="id", access="public")
def leak() -> dict[str, list]:
    """A table only the leak tests open, so "nothing holds a view on it" is checkable."""
    return {"id": list(range(LEAK_ROWS)), "x": [i * 0.25 for i in range(LEAK_ROWS)], "s": [f"row {i}" for i in range(LEAK_ROWS)]}


def _small() -> dict[str, list]:
    return {"id": [1, 2, 3], "value": [10.0, 20.0, 30.0]}


members = perspective_table("members", index="id", access="authenticated")(_small)
staff_only = perspective_table("staff_only", index="id", access="staff")(_small)
traders = perspective_table("traders", index="id", access="group:traders")(_small)
editable = perspective_table("editable", index="id", access="public", editable="staff")(_small)



# The scheduler's end-to-end tables (tests/test_scheduler_e2e.py), declared when E2E_SCHED is set.
SCHED = bool(os.environ.get("E2E_SCHED"))
STREAM_HZ = int(os.environ.get("E2E_STREAM_HZ", "0"))

if SCHED:

    @perspective_table("scratch", index="k", access="public", editable="public")
    def scratch() -> dict[str, list]:
        """Rows 0-9 for clients to write and read back; 1000+ belong to the stream."""
        return {"k": list(range(10)), "v": [-1] * 10}

    @perspective_table("trusted", access="public", expressions="full")
    def trusted() -> dict[str, list]:
        """Viewers may write any ExprTK expression here, loops included (the watchdog test's)."""
        return {"n": list(range(10_000))}

if SCHED and STREAM_HZ:

    @scratch.stream
    async def churn(table) -> None:
        """Server-side writes to rows no client writes, ``E2E_STREAM_HZ`` times a second."""
        import asyncio

        n = 0
        while True:
            await table.aupdate([{"k": 1000 + n % 50, "v": n}])
            n += 1
            await asyncio.sleep(1 / STREAM_HZ)

    @perspective_table("groups", index="id", access="public")
    def groups() -> dict[str, list]:
        return {"id": [0], "g": ["g0"], "x": [1.0]}

    @groups.stream
    async def new_groups(table) -> None:
        """Every write adds a group value no view has seen: the 5.6.1 deadlock's trigger."""
        import asyncio

        n = 1
        while True:
            await table.aupdate([{"id": n, "g": f"g{n}", "x": float(n)}])
            n += 1
            await asyncio.sleep(1 / STREAM_HZ)
if os.environ.get("E2E_ACCESS_TABLES"):  # tests/test_access.py: access lost on open connections
    staff_spare = perspective_table("staff_spare", index="id", access="staff")(_small)
    group_feed = perspective_table("group_feed", index="id", access="group:feeders", editable="staff")(_small)
    perm_feed = perspective_table("perm_feed", index="id", access="perm:auth.view_group")(_small)
