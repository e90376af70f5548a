"""The audit log's hash chain in the database: sealing (verifying and retention are in
storage/audit_retention.py, reading in storage/audit.py).

Entries are inserted unsealed, in the unit of work of what they record
(`storage.access.audit`), and sealed just after it commits: `Database.session()` asks
its `Sealer`, which seals in a short transaction of its own, in the background, one
seal at a time per process (commits that land while a seal runs are taken by the
next). A seal locks the one head row (`audit_chain`, SELECT … FOR UPDATE; SQLite's
single writer serialises anyway), gives every unsealed entry it can see, in id order,
the next sequence number, the previous hash and its own hash (core/audit.py), and moves
the head on. Why not seal inside the unit of work: on PostgreSQL ids do not commit in
order, and holding the head's lock from a unit's first audit entry to its commit would
serialise every unit that audits and invite deadlocks; a seal holds it only for itself.

An entry stays unsealed from its commit to the next seal (milliseconds; until the next
audited commit anywhere if its process died first); verify, export and retention seal
before they read.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import exists
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import GENESIS
from core.audit import Entry
from core.audit import entry_hash
from storage.models import AuditChain
from storage.models import AuditEntry
from storage.models import utcnow

if TYPE_CHECKING:
    from storage.db import Database

log = logging.getLogger(__name__)

HEAD_ID = 1
SEAL_CHUNK = 1000  # entries per sealing transaction (the first seal of an old log loops)
READ_CHUNK = 1000  # entries per fetch when walking, archiving or exporting
# session.info: this unit of work wrote audit entries (Database.session() seals after).
WRITTEN = "audit_written"
# `__table__` is typed as any FromClause (a class may be mapped to a join): ours is a Table.
TABLE = typing.cast(Table, AuditEntry.__table__)
COLUMNS = (TABLE.c.id, TABLE.c.at, TABLE.c.actor_telegram_id, TABLE.c.actor_user_id,
           TABLE.c.chat_id, TABLE.c.action, TABLE.c.subject_type, TABLE.c.subject_id,
           TABLE.c.detail, TABLE.c.seq, TABLE.c.prev_hash, TABLE.c.hash)


class ChainHeadMissing(Exception):
    """Entries are sealed but the head row is gone: nothing is sealed until an operator
    has looked (`python -m bot audit verify` says so)."""


def note_written(session: AsyncSession) -> None:
    session.info[WRITTEN] = True


def wrote_entries(session: AsyncSession) -> bool:
    return bool(session.info.get(WRITTEN))


def entry_of(row: Row[*tuple[Any, ...]]) -> Entry:
    return Entry(id=row.id, at=row.at, actor_telegram_id=row.actor_telegram_id,
                 actor_user_id=row.actor_user_id, chat_id=row.chat_id, action=row.action,
                 subject_type=row.subject_type, subject_id=row.subject_id,
                 detail=row.detail or {}, seq=row.seq, prev_hash=row.prev_hash, hash=row.hash)




async def locked_head(session: AsyncSession) -> AuditChain:
    """The head row, locked until the transaction ends; made at the genesis when there is
    none and nothing is sealed yet (the first seal after migration 0014, or a database
    emptied by hand or by the tests)."""
    query = select(AuditChain).where(AuditChain.id == HEAD_ID).with_for_update()
    head = (await session.execute(query)).scalar_one_or_none()
    if head is not None:
        return head
    if await session.scalar(select(exists().where(TABLE.c.seq.is_not(None)))):
        raise ChainHeadMissing("the audit chain's head row (audit_chain) is missing")
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql"
              else sqlite.insert)
    await session.execute(insert(AuditChain).values(
        id=HEAD_ID, seq=0, hash=GENESIS, base_seq=0, base_hash=GENESIS,
    ).on_conflict_do_nothing(index_elements=["id"]))
    return (await session.execute(query.execution_options(populate_existing=True))).scalar_one()


async def seal(session: AsyncSession, *, limit: int = SEAL_CHUNK) -> int:
    """Seal up to `limit` unsealed entries (those this transaction sees), in id order;
    returns how many."""
    await session.flush()
    head = await locked_head(session)
    rows = (await session.execute(
        select(*COLUMNS).where(TABLE.c.seq.is_(None)).order_by(TABLE.c.id).limit(limit)
    )).all()
    if not rows:
        return 0
    seq, prev = head.seq, head.hash
    seals: list[dict[str, Any]] = []
    for row in rows:
        entry = entry_of(row)
        seq += 1
        own = entry_hash(entry, seq, prev)
        seals.append({"row_id": entry.id, "new_seq": seq, "new_prev": prev, "new_hash": own})
        prev = own
    await session.execute(
        update(TABLE).where(TABLE.c.id == bindparam("row_id"), TABLE.c.seq.is_(None))
        .values(seq=bindparam("new_seq"), prev_hash=bindparam("new_prev"),
                hash=bindparam("new_hash")),
        seals,
    )
    head.seq, head.hash, head.sealed_at = seq, prev, utcnow()
    return len(rows)


async def seal_pending(db: Database) -> int:
    """Seal everything committed so far, a chunk per transaction; returns how many."""
    total = 0
    while True:
        async with db.session() as session:
            sealed = await seal(session)
        total += sealed
        if sealed < SEAL_CHUNK:
            return total


class Sealer:
    """Seals in the background after commits that wrote audit entries, one seal at a
    time: a commit that lands while a seal runs is taken by the next one. A failed seal
    is logged and its entries wait for the next (they are committed: nothing is lost)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._wanted = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def request(self) -> None:
        if self._closed:  # the engine is being disposed: the next process's seal takes them
            return
        self._wanted = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="audit-seal")

    async def _run(self) -> None:
        while self._wanted:
            self._wanted = False
            try:
                await seal_pending(self._db)
            except ChainHeadMissing as error:
                log.error("audit entries not sealed: %s; run `python -m bot audit verify`",
                          error)
                return
            except Exception as error:
                log.warning("audit entries not sealed yet (the next seal takes them): %s",
                            error)
                return

    async def settle(self, *, close: bool = False) -> None:
        """Wait for the seal under way, if any; with `close`, start none after it (a seal
        begun on a disposed engine would open a connection nobody closes)."""
        self._closed = self._closed or close
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])
