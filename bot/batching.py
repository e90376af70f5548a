"""Group commit: work that arrives while a transaction is being written joins the next one.

SQLite has one writer; a transaction per small piece of work (a lookup's audit entries,
a reminder falling due) makes a burst of them queue for the write lock, each waiting in
SQLite's busy handler, which sleeps and polls and lets nobody go first. A `Batcher`
runs one transaction at a time instead: the first item starts one at once (no added
delay when traffic is light), and items submitted meanwhile are handled together by the
next, however many there are. Each submitter waits for the transaction holding its item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Sequence
from typing import Generic
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Handles a batch: one result per item, in order; an exception in that list is raised to
# that item's submitter alone, an exception raised by the call to every submitter.
Process = Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]]


class Batcher(Generic[Item, Result]):
    def __init__(self, process: Process[Item, Result], *, name: str = "batch") -> None:
        self._process = process
        self._name = name
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0

    async def submit(self, item: Item) -> Result:
        """Returns the item's result once its batch is processed (or raises its error)."""
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name=self._name)
        return await done

    async def _work(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._process([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self._name}: {len(results)} results for "
                                       f"{len(batch)} items")
            except Exception as error:  # every submitter of this batch learns of it
                results = [error] * len(batch)
            self.batches += 1
            for (_, done), result in zip(batch, results, strict=True):
                if done.done():  # the submitter was cancelled meanwhile
                    continue
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)
