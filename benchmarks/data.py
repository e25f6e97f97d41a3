"""The benchmark's tables, built the same way for every server so they hold identical bytes.

Columns are computed with Arrow kernels from the row number, so a million rows take a
fraction of a second and every process builds exactly the same table.
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc

TABLE = "bench"
TICKS = "ticks"
# The grouped view of the viewport workloads: 50 x 2,000 groups, about 100k rows deep.
GROUPED = {"group_by": ["g1", "g2"], "columns": ["x", "y", "n"], "aggregates": {"x": "sum", "y": "avg", "n": "sum"}}
# The ticks table is indexed and each update writes ``rows`` keys of its own slot out of
# TICK_SLOTS, so the table stays small (an append-only table makes every update slower
# than the last) and two updates merged into one notification still carry both.
TICKS_INDEX = "key"
TICK_SLOTS = 10


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _labels(prefix: str, count: int, width: int) -> pa.Array:
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(count)])


def bench_table(rows: int) -> bytes:
    """``rows`` deterministic rows as Arrow IPC stream bytes (about 60 bytes a row)."""
    ids = pa.array(range(rows), type=pa.int64())
    # A multiplicative hash of the row number: spread-out values without a random generator.
    mixed = pc.bit_wise_and(pc.multiply(ids, 2654435761), 0xFFFFFFFF)
    return _ipc(
        pa.table(
            {
                "id": ids,
                "g1": _labels("g", 50, 2).take(pc.remainder(ids, 50)),
                "g2": _labels("k", 2000, 4).take(pc.remainder(pc.divide(ids, 50), 2000)),
                "x": pc.divide(pc.cast(mixed, pa.float64()), 4294967296.0),
                "y": pc.multiply(pc.cast(pc.remainder(mixed, 10007), pa.float64()), 0.25),
                "n": pc.remainder(mixed, 1000),
            }
        )
    )


def ticks_schema() -> dict[str, str]:
    return {"key": "integer", "seq": "integer", "ts": "float", "value": "float"}


def tick_batch(seq: int, rows: int) -> bytes:
    """One fan-out update: ``rows`` rows stamped with ``seq`` and the wall clock in ms."""
    now = time.time() * 1000.0
    first = (seq % TICK_SLOTS) * rows
    keys = pa.array(range(first, first + rows), type=pa.int64())
    return _ipc(
        pa.table(
            {
                "key": keys,
                "seq": pa.array([seq] * rows, type=pa.int64()),
                "ts": pa.array([now] * rows, type=pa.float64()),
                "value": pc.multiply(pc.cast(keys, pa.float64()), float(seq)),
            }
        )
    )
