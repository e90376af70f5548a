"""The audit log's hash chain in the database: sealing, verifying, archiving, reading.

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
import gzip
import json
import logging
import os
import typing
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    String,
    Table,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from core.audit import (
    GENESIS,
    Break,
    ChainWalk,
    Entry,
    Named,
    Problem,
    canonical,
    entry_hash,
)
from storage.models import (
    AssistanceRequest,
    AuditChain,
    AuditEntry,
    DutyRoom,
    Liaison,
    Meeting,
    Unit,
    User,
    Zone,
    utcnow,
)

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


# --------------------------------------------------------------------------- sealing


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


# --------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class Verification:
    """What a walk of the kept chain found: how many entries held in the database (from
    `first` to `last`) and in the archive files given (`archived`, from `archived_from`),
    the head, entries not sealed yet, and the first break if any (in the archive file
    `broken_in`, or the database when that is None)."""

    count: int
    first: int
    last: int
    head_hash: str
    unsealed: int
    broken: Break | None
    archived: int = 0
    archived_from: int = 0
    broken_in: Path | None = None


def _chain_query() -> Any:
    """The head and every sealed entry after its base, in sequence order, in one
    statement: one snapshot, so a seal or an archive running meanwhile cannot make a
    sound chain look broken."""
    head = AuditChain.__table__
    return (
        select(head.c.base_seq.label("head_base_seq"), head.c.base_hash.label("head_base_hash"),
               head.c.seq.label("head_seq"), head.c.hash.label("head_hash"), *COLUMNS)
        .select_from(head.outerjoin(TABLE, TABLE.c.seq > head.c.base_seq))
        .where(head.c.id == HEAD_ID)
        .order_by(TABLE.c.seq)
        .execution_options(yield_per=READ_CHUNK)
    )


async def verify(db: Database, archives: Sequence[Path] = ()) -> Verification:
    """Seal what is pending, then walk the chain from its base to the head; with
    `archives` (retention's files), those first: they must chain to one another and end
    where the database's chain begins."""
    archived = await asyncio.to_thread(walk_archives, archives) if archives else None
    await seal_pending(db)
    async with db.reading() as session:
        result = await session.stream(_chain_query())
        walk: ChainWalk | None = None
        head_seq, head_hash = 0, GENESIS
        async for row in result:
            if walk is None:
                walk = ChainWalk(row.head_base_seq, row.head_base_hash)
                head_seq, head_hash = row.head_seq, row.head_hash
            if row.id is not None and walk.feed(entry_of(row)) is not None:
                break
        await result.close()
        unsealed = int(await session.scalar(
            select(func.count()).where(TABLE.c.seq.is_(None))) or 0)
        if walk is None:  # no head row
            sealed = await session.scalar(select(func.count()).where(TABLE.c.seq.is_not(None)))
            broken = Break(Problem.head, 1, None, "audit_chain", "") if sealed else None
            return Verification(0, 1, 0, GENESIS, unsealed, broken)
    walk.end(head_seq, head_hash)
    found = Verification(walk.count, walk.first_seq, walk.seq, head_hash, unsealed, walk.broken)
    if archived is None:
        return found
    archive_walk, broken_in = archived
    if archive_walk.broken is not None:
        return replace(found, broken=archive_walk.broken, broken_in=broken_in)
    if (archive_walk.seq, archive_walk.hash) != (walk.base_seq, walk.base_hash):
        return replace(found, broken=Break(
            Problem.joint, walk.base_seq, None, f"{walk.base_seq} {walk.base_hash}",
            f"{archive_walk.seq} {archive_walk.hash}"))
    return replace(found, archived=archive_walk.count, archived_from=archive_walk.base_seq + 1)


class Unreadable(ValueError):
    """A line of an archive file that is not an archived entry."""

    def __init__(self, line: int, error: Exception) -> None:
        super().__init__(f"line {line}: {error}")


def archive_entries(path: Path) -> Iterator[Entry]:
    """An archive file's entries, as sealed (Unreadable at a line that is not one)."""
    with gzip.open(path, "rt", encoding="utf-8") as archive:
        for number, line in enumerate(archive, start=1):
            if line.strip():
                try:
                    value = json.loads(line)
                    entry = Entry(**{**value, "at": datetime.fromisoformat(value["at"])})
                except (ValueError, TypeError, KeyError) as error:
                    raise Unreadable(number, error) from None
                yield entry


def _first_seq(path: Path) -> int:
    try:
        return next((entry.seq or 0 for entry in archive_entries(path)), 0)
    except (Unreadable, OSError):
        return 0  # walked first, and reported


def walk_archives(paths: Sequence[Path]) -> tuple[ChainWalk, Path | None]:
    """Walk archive files in chain order, from the first one's first entry; returns the
    walk and the file it broke in (None: it held)."""
    walk: ChainWalk | None = None
    for path in sorted(paths, key=_first_seq):
        try:
            for entry in archive_entries(path):
                if walk is None:
                    walk = ChainWalk((entry.seq or 1) - 1, entry.prev_hash or GENESIS)
                if walk.feed(entry) is not None:
                    return walk, path
        except (Unreadable, OSError) as error:
            walk = walk or ChainWalk()
            walk.broken = Break(Problem.unreadable, walk.seq + 1, None, "", str(error))
            return walk, path
    return walk or ChainWalk(), None


# --------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class Archived:
    """Entries written to `path` and removed: sequence numbers `first` to `last`."""

    path: Path
    first: int
    last: int
    count: int


class ArchiveRefused(Exception):
    """The entries to archive do not form a sound chain: they are left in place, as
    evidence, and the archive file is not kept."""

    def __init__(self, broken: Break) -> None:
        super().__init__(f"{broken.problem.value} at seq {broken.seq} (id {broken.id})")
        self.broken = broken


def archive_line(entry: Entry) -> bytes:
    """One archived entry: its content, sequence number and seal, as canonical JSON."""
    assert entry.seq is not None
    return canonical({**entry.content(entry.seq), "prev_hash": entry.prev_hash,
                      "hash": entry.hash}) + b"\n"


async def archive_before(session: AsyncSession, cutoff: datetime, directory: Path,
                         now: datetime) -> Archived | None:
    """Archive the oldest entries, those before the first entry at or after `cutoff`
    (a prefix of the chain, so what stays still chains from the head's new base), to a
    gzip file of JSON lines in `directory`, then delete them and move the base on.
    The file is complete and on disk before the delete is committed; the chain of what
    is archived is checked first (ArchiveRefused)."""
    while await seal(session) == SEAL_CHUNK:
        pass
    head = await locked_head(session)
    first_kept = await session.scalar(
        select(func.min(TABLE.c.seq)).where(TABLE.c.seq.is_not(None), TABLE.c.at >= cutoff))
    last = head.seq if first_kept is None else min(head.seq, first_kept - 1)
    if last <= head.base_seq:
        return None
    first = head.base_seq + 1
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    path = directory / f"audit-{now:%Y-%m-%d}-{first:010d}-{last:010d}.jsonl.gz"
    partial = path.with_name(path.name + ".part")
    walk = ChainWalk(head.base_seq, head.base_hash)
    try:
        with gzip.open(partial, "wb") as archive:
            async for entries in _sealed_between(session, head.base_seq, last):
                for entry in entries:
                    if (broken := walk.feed(entry)) is not None:
                        raise ArchiveRefused(broken)
                await asyncio.to_thread(archive.write,
                                        b"".join(archive_line(e) for e in entries))
        if walk.seq != last:
            raise ArchiveRefused(Break(Problem.gap, walk.seq + 1, None, str(last),
                                       str(walk.seq)))
        await asyncio.to_thread(_sync_and_rename, partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    await session.execute(delete(AuditEntry).where(TABLE.c.seq > head.base_seq,
                                                   TABLE.c.seq <= last))
    head.base_seq, head.base_hash, head.archived_at = last, walk.hash, now
    return Archived(path, first, last, walk.count)


def _sync_and_rename(partial: Path, path: Path) -> None:
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def _sealed_between(session: AsyncSession, after: int,
                          last: int) -> AsyncIterator[list[Entry]]:
    """Sealed entries with after < seq <= last, in order, a chunk at a time."""
    while after < last:
        rows = (await session.execute(
            select(*COLUMNS).where(TABLE.c.seq > after, TABLE.c.seq <= last)
            .order_by(TABLE.c.seq).limit(READ_CHUNK))).all()
        if not rows:
            return
        entries = [entry_of(row) for row in rows]
        yield entries
        after = entries[-1].seq or last


# --------------------------------------------------------------------------- reading


async def entries_between(session: AsyncSession, start: datetime,
                          end: datetime) -> AsyncIterator[list[AuditEntry]]:
    """Entries with start <= at < end in id order, a chunk at a time (the export)."""
    after = 0
    while True:
        chunk = list((await session.execute(
            select(AuditEntry).where(AuditEntry.at >= start, AuditEntry.at < end,
                                     AuditEntry.id > after)
            .order_by(AuditEntry.id).limit(READ_CHUNK))).scalars())
        if not chunk:
            return
        yield chunk
        after = chunk[-1].id


def _about_user(user: User) -> Any:
    return or_(AuditEntry.actor_user_id == user.id,
               AuditEntry.actor_telegram_id == user.telegram_id,
               (AuditEntry.subject_type == "user")
               & (AuditEntry.subject_id == str(user.telegram_id)))


def _about_unit(unit: Unit) -> Any:
    members = select(User.id).where(User.unit_id == unit.id)
    member_ids = select(cast(User.telegram_id, String)).where(User.unit_id == unit.id)
    liaisons = select(cast(Liaison.id, String)).where(Liaison.unit_id == unit.id)
    requests = select(AssistanceRequest.number).where(
        or_(AssistanceRequest.from_unit_id == unit.id, AssistanceRequest.to_unit_id == unit.id))
    return or_(
        AuditEntry.actor_user_id.in_(members),
        (AuditEntry.subject_type == "user") & AuditEntry.subject_id.in_(member_ids),
        AuditEntry.detail["unit"].as_string() == unit.code,
        (AuditEntry.subject_type == "liaison") & AuditEntry.subject_id.in_(liaisons),
        (AuditEntry.subject_type == "request") & AuditEntry.subject_id.in_(requests),
        (AuditEntry.subject_type == "units")
        & (literal(",") + AuditEntry.subject_id + ",").like(f"%,{unit.id},%"),
    )


async def entries_about(
    session: AsyncSession, *, user: User | None = None, unit: Unit | None = None,
    start: datetime, end: datetime, upto: int | None = None, offset: int = 0,
    limit: int = 20,
) -> tuple[int, int, list[AuditEntry]]:
    """Entries in [start, end) by or about `user` (what they saw and changed, and what
    was changed about them) or `unit` (by its members and about them, about its
    liaisons, requests and duty lines; members as they are now); newest first.
    Pages of one listing hold still: entries after `upto` (an id; the newest when the
    listing began, when None) are left out. Returns (how many in all, `upto`, this page)."""
    if upto is None:
        upto = int(await session.scalar(select(func.max(AuditEntry.id))) or 0)
    about = _about_user(user) if user is not None else _about_unit(unit)  # type: ignore[arg-type]
    where = (AuditEntry.id <= upto, AuditEntry.at >= start, AuditEntry.at < end, about)
    total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*where))
    page = (await session.execute(
        select(AuditEntry).where(*where).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset(offset).limit(limit))).scalars()
    return int(total or 0), upto, list(page)


async def actors_of(session: AsyncSession, entries: Sequence[AuditEntry]) -> dict[int, User]:
    """The users who made `entries`, by user id, with their units."""
    ids = {e.actor_user_id for e in entries if e.actor_user_id is not None}
    if not ids:
        return {}
    users = await session.execute(select(User).options(joinedload(User.unit))
                                  .where(User.id.in_(ids)))
    return {user.id: user for user in users.scalars()}


def _subject_ids(entry: AuditEntry) -> list[str]:
    """The ids an entry is about: several for an on-call view of several units."""
    if not (entry.subject_type and entry.subject_id):
        return []
    return entry.subject_id.split(",") if entry.subject_type == "units" else [entry.subject_id]


# What the subjects of each type are called: (model, its name column).
_NAMED: dict[str, tuple[Any, Any]] = {
    "meeting": (Meeting, Meeting.title), "zone": (Zone, Zone.name),
    "duty_room": (DutyRoom, DutyRoom.title), "units": (Unit, Unit.name)}


async def subjects_of(session: AsyncSession, entries: Sequence[AuditEntry]
                      ) -> dict[tuple[str, str], tuple[Named, ...]]:
    """Names for what `entries` are about (liaisons with their unit, users, meetings,
    zones, duty rooms, units), keyed by (subject_type, subject_id); what has no name
    here (a request's or notice's number) or is gone is named by its id."""
    wanted: dict[str, set[int]] = {}
    for entry in entries:
        for part in _subject_ids(entry):
            if part.lstrip("-").isdigit():
                wanted.setdefault(entry.subject_type or "", set()).add(int(part))
    names: dict[tuple[str, str], Named] = {}
    if ids := wanted.get("liaison"):
        for liaison_id, name, unit in await session.execute(
                select(Liaison.id, Liaison.name, Unit.name)
                .join(Unit, Liaison.unit_id == Unit.id).where(Liaison.id.in_(ids))):
            names["liaison", str(liaison_id)] = Named(name, unit)
    if ids := wanted.get("user"):
        for telegram_id, name in await session.execute(
                select(User.telegram_id, User.full_name).where(User.telegram_id.in_(ids))):
            names["user", str(telegram_id)] = Named(name or str(telegram_id))
    for kind, (model, label) in _NAMED.items():
        if ids := wanted.get(kind):
            for row_id, name in await session.execute(
                    select(model.id, label).where(model.id.in_(ids))):
                names[kind, str(row_id)] = Named(name)
    return {
        (entry.subject_type, entry.subject_id): tuple(
            names.get((entry.subject_type, part), Named(part)) for part in _subject_ids(entry))
        for entry in entries if entry.subject_type and entry.subject_id
    }
