"""A PostgreSQL restart under traffic: while the server is down users are told the desk
is briefly unavailable (in their language), what they sent is applied whole or not at
all, and once it accepts connections again no reply is a failure.

The restart is real (stop, down until everyone asking was told so, start) on a private
cluster of the test's own (tests/private_postgres.py): the shared server is never touched.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from i18n import t
from storage.db import Database
from storage.db import DatabaseUnavailable
from storage.db import is_unreachable
from storage.migrate import upgrade
from storage.models import AssistanceRequest
from storage.models import AuditEntry
from storage.models import OutboxMessage
from tests.cluster import eventually
from tests.conftest import SAMPLE_ADMIN
from tests.conftest import SAMPLE_OFFICER
from tests.private_postgres import PrivatePostgres
from tools.testing import BotHarness

LOOKUP = "/oncall 甘肃"
GANSU_DUTY = "张伟"  # 甘肃's duty officer today in data/sample.yaml (SAMPLE_NOW)
LANGUAGES = {SAMPLE_ADMIN: "zh-Hans", SAMPLE_OFFICER: "zh-Hant"}


@pytest.fixture
async def database_url(private_postgres: PrivatePostgres) -> str:
    """The `desk` fixture on the private cluster."""
    await upgrade(private_postgres.url)
    return private_postgres.url


@dataclass
class Reply:
    user: int
    started: float
    text: str


async def lookups(desk: BotHarness, user: int, until: asyncio.Event,
                  replies: list[Reply]) -> None:
    """One person asking again and again; their replies are what reached their chat
    (other streams run meanwhile)."""
    while not until.is_set():
        started = time.monotonic()
        sent = await desk.send(user, LOOKUP)
        mine = [c.params.get("text", "") for c in sent.messages if c.chat_id == user]
        replies.append(Reply(user, started, "\n".join(mine)))
        await asyncio.sleep(0.02)


def told_unavailable(replies: list[Reply], since: float) -> set[int]:
    """Who was told "briefly unavailable" (in their language) for a lookup since `since`."""
    return {r.user for r in replies
            if r.started >= since and r.text == t(LANGUAGES[r.user], "errors.unavailable")}


async def request_count(db: Database, subject: str) -> tuple[int, int, int]:
    """The request, its outbox messages and its audit rows: all or nothing."""
    async with db.reading() as session:
        numbers = list((await session.execute(select(AssistanceRequest.number).where(
            AssistanceRequest.subject == subject))).scalars())
        outbox = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.dedup_key.startswith(f"request:{numbers[0]}:"))) if numbers else 0
        audit = await session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "request.create", AuditEntry.subject_id.in_(numbers)))
    return len(numbers), outbox or 0, audit or 0


async def test_a_restart_under_lookups_and_a_request(
    desk: BotHarness, private_postgres: PrivatePostgres
) -> None:
    subject = "协查重启期间提交的线索"
    # Warm: the pool holds connections the restart will kill.
    for user in LANGUAGES:
        assert GANSU_DUTY in (await desk.send(user, LOOKUP)).text
    review = await desk.send(SAMPLE_OFFICER, f"/request 甘肃 治安管控互动 特急 {subject}")
    [submit] = [data for _, data in review.buttons() if ":submit" in data]
    [card] = [c for c in review.messages if c.params.get("reply_markup")][-1:]

    stop, replies = asyncio.Event(), []
    streams = [asyncio.create_task(lookups(desk, user, stop, replies))
               for user in LANGUAGES]
    await eventually(lambda: {r.user for r in replies} == set(LANGUAGES), 30, "both asking")
    down_from = time.monotonic()
    await asyncio.to_thread(private_postgres.stop_server)
    down = await desk.press_data(SAMPLE_OFFICER, card, submit)
    # Down until each person asking was told so.
    await eventually(lambda: told_unavailable(replies, down_from) == set(LANGUAGES), 30,
                     "both told the desk is unavailable")
    await asyncio.to_thread(private_postgres.start_server)
    up_from = time.monotonic()  # the server accepts connections from here on
    await eventually(lambda: sum(r.started >= up_from for r in replies) >= 4, 30,
                     "answers after the restart")
    stop.set()
    await asyncio.gather(*streams)

    # While it was down: the submission was refused whole, with the clear alert.
    assert down.alerts == [t("zh-Hant", "errors.unavailable")]
    assert await request_count(desk.db, subject) == (0, 0, 0)
    # Every reply was an answer or "briefly unavailable" in the asker's language: never
    # the generic failure.
    generic = {t(language, "errors.generic") for language in LANGUAGES.values()}
    assert not [r for r in replies if r.text in generic]
    # Asked while it was down: an answer (asked as it went, or retried as it came back)
    # or "briefly unavailable", in the asker's language; each person was told that.
    during = [r for r in replies if down_from <= r.started < up_from]
    unavailable = [r for r in during if r.text == t(LANGUAGES[r.user], "errors.unavailable")]
    assert all(r in unavailable or GANSU_DUTY in r.text for r in during), during
    assert {r.user for r in unavailable} == set(LANGUAGES)
    # Once it accepts connections again: only answers.
    after = [r for r in replies if r.started >= up_from]
    assert len(after) >= 4
    assert all(GANSU_DUTY in r.text for r in after), [r.text for r in after]

    # The officer presses again: created once, with everything that goes with it.
    created = await desk.press_data(SAMPLE_OFFICER, card, submit)
    assert "已提交" in created.text
    count, outbox, audit = await request_count(desk.db, subject)
    assert (count, audit) == (1, 1) and outbox >= 1


async def test_a_unit_of_work_waits_out_a_short_outage(
    private_postgres: PrivatePostgres,
) -> None:
    """Refused at connect (nothing written yet): tried once more after a pause, which
    is enough for a restart that short; longer, DatabaseUnavailable."""
    await upgrade(private_postgres.url)
    db = Database(private_postgres.url)
    try:
        await asyncio.to_thread(private_postgres.stop_server)
        with pytest.raises(DatabaseUnavailable):
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
        back = asyncio.create_task(asyncio.to_thread(private_postgres.start_server))
        async with db.session() as session:  # the first try is refused, the retry lands
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
        await back
    finally:
        await db.dispose()


async def test_a_read_whose_connection_dies_under_it_runs_again(
    private_postgres: PrivatePostgres,
) -> None:
    """A read-only unit is run again once; a write unit that failed in its body is not
    (it may have written), and its error says the server went away."""
    await upgrade(private_postgres.url)
    db = Database(private_postgres.url)
    runs = 0

    async def killed_once(session: object) -> int:
        nonlocal runs
        runs += 1
        if runs == 1:  # the server ends this very connection
            await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))  # type: ignore[attr-defined]
        return int((await session.execute(text("SELECT 7"))).scalar_one())  # type: ignore[attr-defined]

    try:
        assert await db.read(killed_once) == 7 and runs == 2
        with pytest.raises(Exception) as failed:
            async with db.session() as session:
                await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert is_unreachable(failed.value)
        async with db.session() as session:  # and the next unit of work is fine
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()

