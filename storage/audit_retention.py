"""The kept audit chain: verifying it from its base to the head (and the archive files
before it), and retention, which moves its oldest entries to those files.

Both seal what is pending first (storage/audit_chain.py), so they read a chain with no
unsealed entries it could still take.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import AsyncIterator
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import GENESIS
from core.audit import Break
from core.audit import ChainWalk
from core.audit import Entry
from core.audit import Problem
from core.audit import canonical
from storage.audit_chain import COLUMNS
from storage.audit_chain import HEAD_ID
from storage.audit_chain import READ_CHUNK
from storage.audit_chain import SEAL_CHUNK
from storage.audit_chain import TABLE
from storage.audit_chain import entry_of
from storage.audit_chain import locked_head
from storage.audit_chain import seal
from storage.audit_chain import seal_pending
from storage.models import AuditChain
from storage.models import AuditEntry

if TYPE_CHECKING:
    from storage.db import Database


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
