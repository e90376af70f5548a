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

On SQLite none of that holds: ids commit in order, and a unit of work already holds the
one write lock from its BEGIN IMMEDIATE to its commit. There a unit seals its own entries
(and any left before them) just before it commits (`seal_own`), in its own transaction:
a seal of its own would be a second write transaction per audited unit, with its
connection checkout, BEGIN, re-read and commit, which under a busy desk's lookups cost
more than the lookups' own writes.

An entry stays unsealed from its commit to the next seal (milliseconds; until the next
audited commit anywhere if its process died first); verify, export and retention seal
before they read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import typing
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

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
HEAD = typing.cast(Table, AuditChain.__table__)
# The head's seal, the last id and whether any entry waits unsealed (the partial index
# of migration 0014): all `insert_sealed` needs, in one read.
HEAD_AND_LAST = select(
    HEAD.c.seq, HEAD.c.hash, select(func.max(TABLE.c.id)).scalar_subquery().label("last"),
    exists().where(TABLE.c.seq.is_(None)).label("backlog"),
).where(HEAD.c.id == HEAD_ID)
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
    return await _seal_visible(session, await locked_head(session), limit)


async def _seal_visible(session: AsyncSession, head: AuditChain, limit: int) -> int:
    rows = (await session.execute(
        select(*COLUMNS).where(TABLE.c.seq.is_(None)).order_by(TABLE.c.id).limit(limit)
    )).all()
    if not rows:
        return 0
    entries = [entry_of(row) for row in rows]
    await session.execute(
        update(TABLE).where(TABLE.c.id == bindparam("row_id"), TABLE.c.seq.is_(None))
        .values(seq=bindparam("new_seq"), prev_hash=bindparam("new_prev"),
                hash=bindparam("new_hash")),
        [{"row_id": entry.id, "new_seq": seq, "new_prev": prev, "new_hash": own}
         for entry, (seq, prev, own) in zip(entries, _chain_on(head, entries), strict=True)],
    )
    return len(rows)


def _chain_on(head: AuditChain, entries: Sequence[Entry]) -> list[tuple[int, str, str]]:
    """Each entry's seal (seq, prev_hash, hash), after the head's; the head moves on to
    the last."""
    links = _links(head.seq, head.hash, entries)
    head.seq, head.hash, head.sealed_at = links[-1][0], links[-1][2], utcnow()
    return links


def _links(seq: int, prev: str, entries: Sequence[Entry]) -> list[tuple[int, str, str]]:
    """Each entry's seal (seq, prev_hash, hash), after the one sealed as `seq`, `prev`."""
    links: list[tuple[int, str, str]] = []
    for entry in entries:
        seq += 1
        own = entry_hash(entry, seq, prev)
        links.append((seq, prev, own))
        prev = own
    return links


async def insert_sealed(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """SQLite: `rows` (`storage.access.audit_row`s, with or without their time) inserted
    already sealed: the unit holds the one write lock, so the next ids are the last
    one's successors and nobody else's. Only their hashes are added to the insert (no
    re-read, no update of each row), and the head moves on in one statement. Behind
    entries waiting unsealed, or where the head is not yet there (or this unit holds it
    as an object already), `_insert_after_backlog` does it the long way."""
    await session.flush()
    found = None
    if identity_key(AuditChain, HEAD_ID) not in session.identity_map:
        found = (await session.execute(HEAD_AND_LAST)).first()
    if found is None or found.backlog:
        await _insert_after_backlog(session, rows)
        return
    seq, own, now = await _insert_linked(session, rows, found.last or 0, found.seq, found.hash)
    await session.execute(update(HEAD).where(HEAD.c.id == HEAD_ID).values(
        seq=seq, hash=own, sealed_at=now))


async def _insert_after_backlog(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """`insert_sealed` after sealing what waits before them; behind a backlog of more
    than a chunk, or on a chain without its head, they are inserted unsealed and wait
    their turn."""
    try:
        head = await locked_head(session)
    except ChainHeadMissing:
        head = None  # nothing is sealed until an operator looks; the background seal says so
    if head is None or await _seal_visible(session, head, SEAL_CHUNK) == SEAL_CHUNK:
        await session.execute(insert(TABLE), list(rows))
        note_written(session)
        return
    last = await session.scalar(select(func.max(TABLE.c.id))) or 0
    head.seq, head.hash, head.sealed_at = await _insert_linked(session, rows, last, head.seq,
                                                               head.hash)


async def _insert_linked(session: AsyncSession, rows: Sequence[dict[str, Any]], last_id: int,
                         seq: int, prev: str) -> tuple[int, str, datetime]:
    """Insert `rows` as the entries after id `last_id`, sealed after the one sealed as
    `seq`, `prev`; returns where the head moves: the last seq, its hash, and when."""
    now = utcnow()
    stored = [_as_stored(row, last_id + n, now) for n, row in enumerate(rows, start=1)]
    links = _links(seq, prev, [Entry(**row) for row in stored])
    await session.execute(insert(TABLE), [
        {**row, "seq": link_seq, "prev_hash": link_prev, "hash": own}
        for row, (link_seq, link_prev, own) in zip(stored, links, strict=True)])
    return links[-1][0], links[-1][2], now


def _as_stored(row: dict[str, Any], entry_id: int, now: datetime) -> dict[str, Any]:
    """A row's columns as the database will give them back, which is what its hash
    covers: its id, its time (now if it has none), its detail through JSON."""
    detail = row.get("detail")
    return {"actor_telegram_id": None, "actor_user_id": None, "chat_id": None,
            "subject_type": None, "subject_id": None, **row, "id": entry_id,
            "at": row.get("at") or now,
            "detail": (detail if _comes_back_as_is(detail) else json.loads(json.dumps(detail)))
            if detail else {}}


_AS_IS = frozenset({str, int, bool, type(None)})


def _comes_back_as_is(detail: dict[str, Any]) -> bool:
    """Whether JSON gives `detail` back unchanged: text keys, and text, whole numbers,
    booleans or nulls as values (a lookup's views: no round trip for them)."""
    return all(type(key) is str and type(value) in _AS_IS for key, value in detail.items())


async def seal_own(session: AsyncSession) -> None:
    """Seal in the unit's own transaction, before it commits (SQLite: module docstring).
    What is left over (more than a chunk, or a chain without its head, which this leaves
    alone) is the background seal's, which says why."""
    try:
        sealed = await seal(session)
    except ChainHeadMissing:
        return
    if sealed < SEAL_CHUNK:
        session.info[WRITTEN] = False


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
