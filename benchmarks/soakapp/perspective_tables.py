"""The soak table: every row carries a unique sequence number, so losses are countable.

Rows live in a ring of ``SLOTS`` index values, so the table stays the same size however
long the soak runs, and any growth in memory is the server's, not the data's.
"""

from __future__ import annotations

import asyncio
import os
import time

from django_perspective.tables import perspective_table

UPDATES_PER_SECOND = int(os.environ.get("SOAK_UPDATES_PER_SECOND", "10"))
ROWS_PER_UPDATE = int(os.environ.get("SOAK_ROWS_PER_UPDATE", "100"))
SLOTS = 20_000


@perspective_table("soak", index="slot", access="public")
def soak() -> dict[str, str]:
    return {"slot": "integer", "seq": "integer", "sent": "float"}


@soak.stream
async def feed(table) -> None:
    seq = 0
    while True:
        sent = time.time()
        seqs = list(range(seq, seq + ROWS_PER_UPDATE))
        await table.aupdate({"slot": [s % SLOTS for s in seqs], "seq": seqs, "sent": [sent] * ROWS_PER_UPDATE})
        seq += ROWS_PER_UPDATE
        await asyncio.sleep(1 / UPDATES_PER_SECOND)
