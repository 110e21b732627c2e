"""A process that migrates a journal at a given instant, as its siblings do
(``test_migrations.py``):

    python migrate_race.py DATABASE_URL START_AT

It sleeps until the wall clock reads START_AT (seconds since the epoch), migrates to the head
and prints ``ok`` or the error.
"""

from __future__ import annotations

import asyncio
import sys
import time


async def main(url: str, start_at: float) -> str:
    from ffe.store import migrate
    from ffe.store.database import Database

    db = Database(url)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await migrate.upgrade(db)
        return "ok"
    except Exception as exc:  # reported to the test, which names it
        return repr(exc)
    finally:
        await db.dispose()


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1], float(sys.argv[2]))), flush=True)
