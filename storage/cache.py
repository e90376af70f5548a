"""What lookups read from the directory, kept in memory while nothing changes it.

A database trigger (migration 0005) moves `data_epoch` on every change to users,
units, branches, zones, liaisons, duty rooms and rosters, whoever makes it. Each
update learns the epoch from a read that began after it arrived (`EpochWatch`:
updates arriving together share one read) and uses what was cached under it; a new
epoch empties the caches. So an answer never misses a change committed before its
question came: a revoked officer is refused, a changed phone number shown, at once
and in every process.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Hashable
from typing import Any
from typing import TypeVar
from typing import cast

from sqlalchemy import Dialect
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DataEpoch

T = TypeVar("T")
DEFAULT_ENTRIES = 4096


EPOCH_QUERY = select(DataEpoch.value).where(DataEpoch.id == 1)


async def data_epoch(session: AsyncSession) -> int:
    return (await session.execute(EPOCH_QUERY)).scalar_one()


def data_epoch_sql(dialect: Dialect) -> str:
    """The same query as plain SQL, for a driver connection (storage/db.py)."""
    return str(EPOCH_QUERY.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


async def bump_data_epoch(session: AsyncSession) -> None:
    """For changes no trigger sees (the search index's bulk rebuild drops triggers)."""
    await session.execute(update(DataEpoch).where(DataEpoch.id == 1)
                          .values(value=DataEpoch.value + 1))


class EpochWatch:
    """One read of the epoch at a time, shared by every caller that arrived before it
    began; callers arriving during a read wait for the next one."""

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        self._next: asyncio.Future[int] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.reads = 0

    async def current(self) -> int:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        waiting = self._next
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_rounds())
        return await asyncio.shield(waiting)

    async def _read_rounds(self) -> None:
        while self._next is not None:
            answered, self._next = self._next, None  # later callers: the next round
            try:
                value = await self._read()
            except Exception as error:
                answered.set_exception(error)
                answered.exception()  # retrieved: no warning if every waiter went away
            else:
                answered.set_result(value)
            self.reads += 1


class EpochCache:
    """A bounded LRU map valid for one epoch. Values read under an older epoch than
    the newest seen are neither served nor kept."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES) -> None:
        self.max_entries = max_entries
        self.epoch = -1
        self._values: OrderedDict[Hashable, Any] = OrderedDict()

    def _current(self, epoch: int) -> bool:
        if epoch > self.epoch:
            self.epoch = epoch
            self._values.clear()
        return epoch == self.epoch

    def get(self, epoch: int, key: Hashable) -> Any | None:
        if not self._current(epoch):
            return None
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def put(self, epoch: int, key: Hashable, value: Any) -> None:
        if value is None or not self._current(epoch):
            return
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.max_entries:
            self._values.popitem(last=False)

    async def get_or_load(self, epoch: int, key: Hashable,
                          load: Callable[[], Awaitable[T]]) -> T:
        cached = self.get(epoch, key)
        if cached is not None:
            return cast(T, cached)
        value = await load()
        self.put(epoch, key, value)
        return value

    def __len__(self) -> int:
        return len(self._values)
