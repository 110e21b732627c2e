"""A journal writer for ``test_durability.py``, run as a child process: it commits batches of
decisions until it is killed.

    python journal_writer.py DATABASE_URL RUN_ID BATCH_ROWS

Every transaction is one batch: BATCH_ROWS decisions and one audit entry, all carrying the
batch's sequence number (as ``inputs_fingerprint`` and as the audit target). The writer carries
on after the last batch the journal holds, prints ``resume N`` (N: that batch) once it has read
it, then the number of every batch right after its commit returned, flushed at once, so that
the test, reading the pipe, knows which batches were committed even if the writer dies the
next instant.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from ffe.store.database import Database
from ffe.store.repositories import unit_of_work

ACTOR = "journal_writer"
T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def batch(number: int, rows: int) -> list[dict[str, Any]]:
    return [
        {
            "time": T0 + timedelta(minutes=number),
            "symbol": f"S{i:04d}",
            "target": (i % 5 - 2) / 2,
            "confidence": 0.5,
            "rationale": f"batch {number} row {i}",
            "votes": {"batch": number, "row": i},
            "inputs_fingerprint": str(number),
        }
        for i in range(rows)
    ]


def report(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


async def last_batch(db: Database, run_id: str) -> int:
    async with unit_of_work(db) as uow:
        newest = await uow.journal.last_decisions(run_id, limit=1)
    return int(newest[0].inputs_fingerprint or 0) if newest else 0


async def write_until_killed(url: str, run_id: str, rows: int) -> None:
    async with Database(url) as db:
        number = await last_batch(db, run_id)
        report(f"resume {number}")
        while True:  # a closed pipe (the test is gone) ends it with BrokenPipeError
            number += 1
            async with unit_of_work(db) as uow:
                await uow.journal.add_decisions(run_id, batch(number, rows))
                await uow.audit.record(ACTOR, "batch", target=str(number))
            report(str(number))


if __name__ == "__main__":
    url, run_id, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(write_until_killed(url, run_id, rows))
