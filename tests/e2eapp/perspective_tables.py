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
