"""The audit log's hash chain (issue #17), on SQLite and PostgreSQL: entries are sealed
after their commit whatever order they commit in, `python -m bot audit verify` names
the first entry changed or removed, retention archives old entries to a file and the
chain still verifies, and `python -m bot audit export` writes the inspectors' CSV."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from bot.emulator import BotApiEmulator
from core.audit import GENESIS
from core.audit import ChainWalk
from core.audit import Entry
from core.audit import Problem
from storage.access import audit
from storage.access import audit_many
from storage.access import audit_row
from storage.audit_chain import ChainHeadMissing
from storage.audit_chain import seal_pending
from storage.audit_retention import ArchiveRefused
from storage.audit_retention import archive_before
from storage.audit_retention import archive_entries
from storage.audit_retention import archive_line
from storage.audit_retention import verify
from storage.db import Database
from storage.models import AuditChain
from storage.models import AuditEntry
from storage.models import ScheduleMark
from tests.test_cli import run
from tools.clock import FakeClock
from tools.testing import BotHarness


async def write(db: Database, count: int, *, start: int = 0) -> None:
    """`count` units of work, one entry each (sealed after each commit)."""
    for n in range(start, start + count):
        async with db.session() as session:
            await audit(session, "user.language", actor_telegram_id=900 + n,
                        subject_type="user", subject_id=900 + n, language="en", 名="值")


def write_archive(path: Path, entries: list[Entry]) -> None:
    with gzip.open(path, "wb") as archive:
        archive.writelines(archive_line(e) for e in entries)


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


async def chain(db: Database) -> list[AuditEntry]:
    async with db.reading() as session:
        return list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())


async def sql(db: Database, statement: str) -> None:
    async with db.session() as session:
        await session.execute(text(statement))


# --------------------------------------------------------------------------- sealing


async def test_entries_are_sealed_just_after_their_commit(db: Database) -> None:
    await write(db, 5)
    await db.sealer.settle()

    entries = await chain(db)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(entries))
    result = await verify(db)
    assert (result.count, result.first, result.last, result.broken) == (5, 1, 5, None)
    assert result.head_hash == entries[-1].hash and result.unsealed == 0


async def test_a_batch_between_unsealed_entries_is_sealed_in_id_order(db: Database) -> None:
    """A unit that writes an entry, then a batch (a lookup's views), then another: one
    chain in id order, and it verifies, whatever the batch's detail holds (numbers as
    keys, tuples: what the database gives back is what is hashed). On SQLite the unit
    seals it all before it commits."""
    await write(db, 1)
    async with db.session() as session:
        await audit(session, "roster.update", actor_telegram_id=1, subject_type="roster",
                    subject_id=1)
        await audit_many(session, [
            audit_row("contact.view", actor_telegram_id=2, subject_type="liaison",
                      subject_id=n, query="四川 刑侦", pages={10: "十", 9: "九"}, span=(0, 5))
            for n in range(3)])
        await audit(session, "roster.update", actor_telegram_id=1, subject_type="roster",
                    subject_id=2)
    if db.dialect == "sqlite":
        assert all(e.hash is not None for e in await chain(db))
    await db.sealer.settle()

    entries = await chain(db)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert [e.action for e in entries] == ["user.language", "roster.update", *["contact.view"] * 3,
                                           "roster.update"]
    assert entries[2].detail == {"query": "四川 刑侦", "pages": {"10": "十", "9": "九"},
                                 "span": [0, 5]}
    result = await verify(db)
    assert (result.count, result.broken, result.unsealed) == (6, None, 0)


async def test_batches_and_single_entries_mixed_in_one_unit_make_one_chain(db: Database) -> None:
    """Batches sealed as they are inserted (the head moved by a statement), a single entry
    left for the unit's seal, the head read as an object and kept, a batch after it (the
    long way, through that object), another batch then (still through it), and a batch in the
    next unit, with a single entry after it for the unit's seal: one chain in id order,
    every sequence number once, and it verifies."""
    def views(actor: int) -> list[dict[str, object]]:
        return [audit_row("contact.view", actor_telegram_id=actor, subject_type="liaison",
                          subject_id=n, query="四川", offset=0) for n in range(2)]

    await write(db, 1)
    await db.sealer.settle()
    async with db.session() as session:
        await audit_many(session, views(1))
        await audit(session, "roster.update", actor_telegram_id=1, subject_type="roster",
                    subject_id=1)
        held = await session.get(AuditChain, 1)  # the head as an object, kept
        await audit_many(session, views(2))
        await audit_many(session, views(3))
        await audit(session, "roster.update", actor_telegram_id=3, subject_type="roster",
                    subject_id=1)
        assert held is not None
    async with db.session() as session:
        await audit_many(session, views(4))
    await db.sealer.settle()

    entries = await chain(db)
    assert [e.seq for e in entries] == list(range(1, 12))
    assert [e.actor_telegram_id for e in entries] == [900, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4]
    result = await verify(db)
    assert (result.count, result.broken, result.unsealed) == (11, None, 0)
    async with db.reading() as session:
        head = await session.get(AuditChain, 1)
    assert head is not None and (head.seq, head.hash) == (11, entries[-1].hash)


async def test_processes_writing_at_once_make_one_chain(database_url: str) -> None:
    """Three processes' worth of writers (each its own engine and sealer), forty units of
    work each, some lookups' batches of three: every entry is sealed once, in one chain."""
    processes = [Database(database_url) for _ in range(3)]
    try:
        async def writer(db: Database, offset: int) -> None:
            for n in range(40):
                if n % 4 == 0:
                    async with db.session() as session:
                        await audit_many(session, [audit_row(
                            "contact.view", actor_telegram_id=offset + n, subject_type="liaison",
                            subject_id=i) for i in range(3)])
                else:
                    await write(db, 1, start=offset + n)

        await asyncio.gather(*(writer(db, 1000 * i) for i, db in enumerate(processes)))
        for db in processes:
            await db.sealer.settle()
        result = await verify(processes[0])
    finally:
        for db in processes:
            await db.dispose()
    assert result.broken is None and result.unsealed == 0
    assert result.count == 3 * (30 + 10 * 3) and result.last == result.count


async def test_an_entry_committed_after_a_later_one_is_sealed_after_it(
    postgres_url: str,
) -> None:
    """On PostgreSQL ids do not commit in order: an entry whose transaction stays open
    while a later id commits and is sealed is sealed next, not lost or misplaced."""
    db = Database(postgres_url)
    try:
        slow = db.sessionmaker()
        async with slow.begin():
            await audit(slow, "roster.update", actor_telegram_id=1, subject_type="roster",
                        subject_id=1)
            await slow.flush()  # takes the lower id, not yet committed
            await write(db, 1)
            await seal_pending(db)
        await slow.close()
        await seal_pending(db)
        entries = await chain(db)
        assert [(e.action, e.seq) for e in entries] == [("roster.update", 2),
                                                         ("user.language", 1)]
        assert (await verify(db)).broken is None
    finally:
        await db.dispose()


# --------------------------------------------------------------------------- verifying


@pytest.mark.parametrize(
    ("tamper", "problem", "seq"),
    [
        ("UPDATE audit_log SET subject_id = '999' WHERE seq = 3", Problem.content, 3),
        (f"UPDATE audit_log SET hash = '{'f' * 64}' WHERE seq = 3", Problem.content, 3),
        (f"UPDATE audit_log SET prev_hash = '{'e' * 64}' WHERE seq = 4", Problem.link, 4),
        ("DELETE FROM audit_log WHERE seq = 3", Problem.gap, 3),
        ("DELETE FROM audit_log WHERE seq = 5", Problem.tail, 5),
        ("UPDATE audit_log SET seq = NULL WHERE seq = 2", Problem.gap, 2),
    ],
    ids=["content", "hash", "prev_hash", "deleted", "tail-truncated", "unsealed-by-hand"],
)
async def test_verify_names_the_first_broken_entry(
    db: Database, tamper: str, problem: Problem, seq: int
) -> None:
    await write(db, 5)
    await db.sealer.settle()
    ids = {e.seq: e.id for e in await chain(db)}

    await sql(db, tamper)
    result = await verify(db)

    assert result.broken is not None
    assert (result.broken.problem, result.broken.seq) == (problem, seq)
    assert result.count == seq - 1
    if problem in (Problem.content, Problem.link):
        assert result.broken.id == ids[seq]
    if problem is Problem.gap:
        assert result.broken.id == ids[seq + 1]  # the entry found where seq was expected


async def test_a_chain_without_its_head_is_broken_and_nothing_more_is_sealed(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await write(db, 2)
    await db.sealer.settle()
    await sql(db, "DELETE FROM audit_chain")

    await write(db, 1)
    await db.sealer.settle()

    assert "head row (audit_chain) is missing" in caplog.text
    assert [e.seq for e in await chain(db)] == [1, 2, None]
    with pytest.raises(ChainHeadMissing):
        await verify(db)  # it seals first, and refuses to


async def test_a_lookups_views_are_kept_on_a_chain_without_its_head(db: Database) -> None:
    """With the head gone nothing is sealed, but the views a lookup records are still
    written (unsealed), so lookups go on being answered."""
    await write(db, 1)
    await db.sealer.settle()
    await sql(db, "DELETE FROM audit_chain")

    async with db.session() as session:
        await audit_many(session, [audit_row("contact.view", actor_telegram_id=2,
                                             subject_type="liaison", subject_id=n)
                                   for n in range(2)])
    await db.sealer.settle()

    assert [e.seq for e in await chain(db)] == [1, None, None]


async def test_verify_from_the_shell(database_url: str, db: Database, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url}
    await write(db, 5)
    await db.sealer.settle()
    ids = {e.seq: e.id for e in await chain(db)}

    sound = run("audit", "verify", env=env, cwd=tmp_path)
    assert sound.returncode == 0, sound.stderr
    assert "audit chain verified: 5 entries, seq 1 to 5" in sound.stdout

    await sql(db, "UPDATE audit_log SET detail = '{\"language\": \"zh-Hans\"}' WHERE seq = 4")
    edited = run("audit", "verify", env=env, cwd=tmp_path)
    assert edited.returncode == 1
    assert f"entry id {ids[4]} (seq 4): its content does not match its hash" in edited.stderr

    await sql(db, "DELETE FROM audit_log WHERE seq = 2")
    removed = run("audit", "verify", env=env, cwd=tmp_path)
    assert removed.returncode == 1 and "Traceback" not in removed.stderr
    assert (f"seq 2 is missing, the next entry found is id {ids[3]} with seq 3: "
            "an entry was removed") in removed.stderr


def test_the_walk_takes_entries_from_any_source() -> None:
    """core.audit alone: a chain built by hand verifies, and a changed entry does not."""
    from core.audit import entry_hash

    walk, prev, entries = ChainWalk(), GENESIS, []
    for seq in (1, 2):
        entry = Entry(id=seq, at=datetime(2026, 12, 1, tzinfo=UTC), actor_telegram_id=None,
                      actor_user_id=None, chat_id=None, action="test", subject_type=None,
                      subject_id=None, detail={"b": 1, "a": [seq]})
        own = entry_hash(entry, seq, prev)
        entries.append(Entry(**{**vars(entry), "seq": seq, "prev_hash": prev, "hash": own}))
        prev = own
    assert all(walk.feed(e) is None for e in entries) and walk.end(2, prev) is None
    changed = Entry(**{**vars(entries[1]), "detail": {"a": [2], "b": 2}})
    assert ChainWalk(1, entries[0].hash or "").feed(changed).problem is Problem.content  # type: ignore[union-attr]


# --------------------------------------------------------------------------- retention


NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)


async def old_and_new_entries(db: Database) -> None:
    """Entries 400, 300 and 200 days old, then 100 and 10 days old."""
    async with db.session() as session:
        await audit_many(session, [
            {**audit_row("contact.view", actor_telegram_id=7, subject_type="liaison",
                         subject_id=days, query="四川"), "at": NOW - timedelta(days=days)}
            for days in (400, 300, 200, 100, 10)])
    await db.sealer.settle()


async def test_retention_archives_old_entries_and_the_chain_still_verifies(
    emulator: BotApiEmulator, database_url: str, db: Database, tmp_path: Path,
) -> None:
    await old_and_new_entries(db)
    archive_dir = tmp_path / "archive"
    clock = FakeClock(NOW)
    async with BotHarness(emulator, database_url, now=clock,
                          audit_archive_dir=str(archive_dir)) as bot:
        clock.advance(days=1)  # past 03:30 in Beijing: the day's retention is due
        await bot.run_due()

        files = names(archive_dir)
        assert files == ["audit-2026-12-07-0000000001-0000000003.jsonl.gz"]
        archived = list(archive_entries(archive_dir / files[0]))
        assert [(e.seq, e.subject_id) for e in archived] == [(1, "400"), (2, "300"), (3, "200")]
        assert archived[0].prev_hash == GENESIS
        kept = await chain(db)
        assert [e.subject_id for e in kept if e.action == "contact.view"] == ["100", "10"]
        record = next(e for e in kept if e.action == "audit.archive")
        assert record.detail["first_seq"] == 1 and record.detail["last_seq"] == 3
        await bot.db.sealer.settle()
        result = await verify(db)
        assert result.broken is None and (result.first, result.count) == (4, 3)
        async with db.reading() as session:
            head = (await session.execute(select(AuditChain))).scalar_one()
        assert (head.base_seq, head.base_hash) == (3, archived[-1].hash)

        # The archive verifies with the database: it ends where the kept chain begins.
        with_archive = await verify(db, [archive_dir / files[0]])
        assert with_archive.broken is None
        assert (with_archive.archived, with_archive.archived_from) == (3, 1)
        changed = tmp_path / "changed.jsonl.gz"
        write_archive(changed, [replace(e, detail={"query": "云南"}) if e.seq == 2 else e
                                for e in archived])
        broken = await verify(db, [changed])
        assert broken.broken is not None and broken.broken_in == changed
        assert (broken.broken.problem, broken.broken.seq) == (Problem.content, 2)
        write_archive(changed, archived[:2])  # the last archived entry lost
        assert (await verify(db, [changed])).broken.problem is Problem.joint  # type: ignore[union-attr]
        changed.write_bytes(b"not gzip")
        assert (await verify(db, [changed])).broken.problem is Problem.unreadable  # type: ignore[union-attr]

        clock.advance(days=1)  # the next day's run: nothing is old enough
        await bot.run_due()
        assert names(archive_dir) == files
        assert (await verify(db)).broken is None

    async with db.session() as session:  # and run again at once: nothing to do
        assert await archive_before(session, NOW - timedelta(days=190), archive_dir, NOW) is None


async def test_a_new_desk_started_after_the_run_time_owes_no_retention(
    emulator: BotApiEmulator, database_url: str, tmp_path: Path,
) -> None:
    """Started at 03:35 in Beijing on a new database, the desk ran that day's retention
    late at once (an extra job and log line that broke tests run at 19:30–19:40 UTC):
    housekeeping is owed nothing from before the first run. The next day's run fires."""
    just_after = datetime(2026, 12, 6, 19, 35, tzinfo=UTC)  # 03:35 on the 7th in Beijing
    clock = FakeClock(just_after)
    async with BotHarness(emulator, database_url, now=clock,
                          audit_archive_dir=str(tmp_path)) as bot:
        await bot.run_due()
        async with bot.db.reading() as session:
            keys = (await session.execute(select(ScheduleMark.key))).scalars().all()
        assert not [key for key in keys if key.startswith("audit:retention:")]
        clock.advance(days=1)
        await bot.run_due()
        async with bot.db.reading() as session:
            keys = (await session.execute(select(ScheduleMark.key))).scalars().all()
        assert [key for key in keys if key.startswith("audit:retention:")] == [
            "audit:retention:2026-12-08"]


async def test_retention_never_archives_a_broken_chain(db: Database, tmp_path: Path) -> None:
    await old_and_new_entries(db)
    await sql(db, "UPDATE audit_log SET subject_id = '1' WHERE seq = 2")

    with pytest.raises(ArchiveRefused):
        async with db.session() as session:
            await archive_before(session, NOW - timedelta(days=190), tmp_path / "archive", NOW)

    assert names(tmp_path / "archive") == []
    assert len(await chain(db)) == 5


# --------------------------------------------------------------------------- export


async def test_export_from_the_shell_is_csv_for_excel(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    await old_and_new_entries(db)
    out = tmp_path / "inspect.csv"
    day = (NOW - timedelta(days=10)).date()
    exported = run("audit", "export", "--since", str(day), "--until", str(day), "--out",
                   str(out), env={"DATABASE_URL": database_url}, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert f"exported 1 audit entries from {day} to {day} to {out}" in exported.stdout

    data = out.read_bytes()
    assert data.startswith("\ufeff".encode())  # UTF-8 with a BOM, as Excel wants
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["链序号", "记录号", "时间（Asia/Shanghai）", "操作人"]
    assert len(rows) == 2
    assert rows[1][0] == "5" and rows[1][8] == "contact.view" and rows[1][7] == "查看"
    assert rows[1][12] == '{"query":"四川"}'
    entries = await chain(db)
    assert rows[1][13] == entries[4].hash
    assert entries[-1].action == "audit.export" and entries[-1].detail["entries"] == 1

    backwards = run("audit", "export", "--since", "2026-12-02", "--until", "2026-12-01",
                    env={"DATABASE_URL": database_url}, cwd=tmp_path)
    assert backwards.returncode == 1 and "--until must not be before --since" in backwards.stderr


async def test_a_log_emptied_with_its_head_starts_again_from_the_genesis(db: Database) -> None:
    """No head and nothing sealed (a database emptied by hand, as the tests do): the
    next seal makes the head again."""
    await write(db, 1)
    await db.sealer.settle()
    async with db.session() as session:
        await session.execute(update(AuditEntry).values(seq=None, prev_hash=None, hash=None))
        await session.execute(delete(AuditChain))
    await write(db, 1)
    await db.sealer.settle()
    assert [e.seq for e in await chain(db)] == [1, 2]
    assert (await verify(db)).broken is None
