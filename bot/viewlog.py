"""Who was shown which contact card or duty line, on record before it is shown.

A lookup writes nothing but its audit entries, and one write transaction per lookup
would queue busy desks behind SQLite's single writer. So lookups hand their entries
here and wait: entries that arrive while a transaction is being written go into the
next one, together (group commit). Each waiter is released only after the commit that
holds its entries, or gets that commit's error (and its answer is not sent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from storage.access import audit_many
from storage.db import Database


class ViewLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[Sequence[dict[str, Any]], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0

    async def record(self, rows: Sequence[dict[str, Any]]) -> None:
        """Returns once `rows` (`storage.access.audit_row`s) are committed."""
        if not rows:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.db.session() as session:
                    await audit_many(session, [row for rows, _ in batch for row in rows])
            except Exception as error:  # every waiter of this batch learns of it
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            self.commits += 1
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
