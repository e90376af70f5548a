"""The outbox queries: idempotent enqueue, claims with leases, fencing, chat status."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select
from telegram import InlineKeyboardButton
from telegram import InlineKeyboardMarkup

from bot.config import Settings
from bot.health import check_outbox
from core.enums import OutboxState
from storage import chat_status
from storage import outbox
from storage import outbox_claims
from storage.db import Database
from storage.models import ChatStatus
from storage.models import OutboxMessage

T0 = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
GROUP_A, GROUP_B, GROUP_C = -1001, -1002, -1003


async def add(db: Database, key: str, chat_id: int = GROUP_A, **kwargs: object) -> bool:
    kwargs.setdefault("now", T0)
    async with db.session() as session:
        return await outbox.enqueue(
            session, chat_id=chat_id, kind="test", text=kwargs.pop("text", key),
            dedup_key=key, **kwargs,  # type: ignore[arg-type]
        )


async def claim(db: Database, now: datetime = T0, limit: int = 50, **kwargs: object) -> list:
    async with db.session() as session:
        return await outbox_claims.claim_batch(
            session, limit=limit, now=now, lease_seconds=60, worker_id="t",
            **kwargs,  # type: ignore[arg-type]
        )


async def row(db: Database, key: str) -> OutboxMessage:
    async with db.session() as session:
        found = await outbox.get_message(session, key)
        assert found is not None
        return found


async def test_enqueue_is_idempotent_on_the_dedup_key(db: Database) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("确认收到", callback_data="ack:1")]])
    assert await add(db, "notice:1:room:7", payload={"parse_mode": "HTML", "reply_markup": markup})
    assert not await add(db, "notice:1:room:7", text="another text")
    async with db.session() as session:
        count = await session.scalar(select(func.count()).select_from(OutboxMessage))
    assert count == 1
    stored = await row(db, "notice:1:room:7")
    assert stored.state == OutboxState.pending
    assert stored.payload == {
        "parse_mode": "HTML",
        "reply_markup": {"inline_keyboard": [[{"text": "确认收到", "callback_data": "ack:1"}]]},
        "text": "notice:1:room:7",
    }
    assert stored.next_attempt_at == T0


async def test_enqueue_commits_with_the_callers_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            await outbox.enqueue(session, chat_id=1, kind="t", text="x", dedup_key="k")
            raise RuntimeError("the change failed")
    async with db.session() as session:
        assert await outbox.get_message(session, "k") is None
    with pytest.raises(ValueError):
        await add(db, "bad", payload={"chat_id": 5})


async def test_claim_honours_next_attempt_at(db: Database) -> None:
    await add(db, "later", not_before=T0 + timedelta(minutes=5))
    await add(db, "now", chat_id=GROUP_B)
    claimed = await claim(db)
    assert [r.dedup_key for r in claimed] == ["now"]
    assert claimed[0].state == OutboxState.sending
    assert claimed[0].attempts == 1
    assert claimed[0].lease_until == T0 + timedelta(seconds=60)
    assert await claim(db, T0 + timedelta(seconds=30)) == []  # "now" is leased, "later" waits
    claimed = await claim(db, T0 + timedelta(minutes=5))
    assert sorted(r.dedup_key for r in claimed) == ["later", "now"]  # "now": lease expired


async def test_a_lease_hides_a_row_until_it_expires_and_fences_the_old_claim(
    db: Database,
) -> None:
    await add(db, "k")
    first = await claim(db)
    assert len(first) == 1
    assert await claim(db, T0 + timedelta(seconds=59)) == []
    again = await claim(db, T0 + timedelta(seconds=60))
    assert [(r.dedup_key, r.attempts) for r in again] == [("k", 2)]
    async with db.session() as session:
        # The first claimant is late: its outcome is not recorded over the second's.
        assert await outbox_claims.mark_sent(session, first[0].id, 11, T0, attempt=1) is None
        assert not await outbox_claims.mark_failed(session, first[0].id, "late", attempt=1)
        sent = await outbox_claims.mark_sent(session, again[0].id, 12, T0, attempt=2)
    assert sent is not None and sent.telegram_message_id == 12
    stored = await row(db, "k")
    assert (stored.state, stored.telegram_message_id, stored.sent_at) == (
        OutboxState.sent, 12, T0,
    )


async def test_a_renewed_lease_keeps_a_row_and_only_its_holder_renews_it(
    db: Database,
) -> None:
    await add(db, "held", GROUP_A)
    await add(db, "lapsed", GROUP_B)
    await add(db, "done", GROUP_C)
    held, lapsed, done = sorted(await claim(db), key=lambda r: r.chat_id, reverse=True)
    async with db.session() as session:
        await outbox_claims.mark_sent(session, done.id, 7, T0, attempt=1)
        assert await outbox_claims.renew_leases(
            session, {held.id: 1}, now=T0 + timedelta(seconds=50), lease_seconds=60
        ) == {held.id}
    # "lapsed" was not renewed in time: another worker claims it (attempt 2).
    assert [r.id for r in await claim(db, T0 + timedelta(seconds=60))] == [lapsed.id]
    async with db.session() as session:
        renewed = await outbox_claims.renew_leases(
            session, {held.id: 1, lapsed.id: 1, done.id: 1},
            now=T0 + timedelta(seconds=70), lease_seconds=60)
    assert renewed == {held.id}
    assert (await row(db, "held")).lease_until == T0 + timedelta(seconds=130)
    assert await claim(db, T0 + timedelta(seconds=110)) == []  # both leases hold
    assert (await row(db, "lapsed")).lease_until == T0 + timedelta(seconds=120)
    assert (await row(db, "done")).state == OutboxState.sent


async def test_one_row_per_chat_in_flight_in_order(db: Database) -> None:
    for i in range(3):
        await add(db, f"a{i}", GROUP_A)
    await add(db, "b0", GROUP_B)
    await add(db, "c0", GROUP_C)
    first = await claim(db)
    assert sorted(r.dedup_key for r in first) == ["a0", "b0", "c0"]
    # a1 waits while a0 is in flight.
    assert await claim(db) == []
    async with db.session() as session:
        a0 = next(r for r in first if r.dedup_key == "a0")
        await outbox_claims.mark_sent(session, a0.id, 1, T0)
    assert [r.dedup_key for r in await claim(db)] == ["a1"]


async def test_claim_skips_excluded_chats_and_respects_the_limit(db: Database) -> None:
    for i, chat in enumerate((GROUP_A, GROUP_B, GROUP_C, 501, 502)):
        await add(db, f"m{i}", chat)
    claimed = await claim(db, limit=2, exclude_chats={GROUP_A})
    assert [r.dedup_key for r in claimed] == ["m1", "m2"]
    assert [r.dedup_key for r in await claim(db, exclude_chats=[GROUP_A])] == ["m3", "m4"]
    assert [r.dedup_key for r in await claim(db)] == ["m0"]


async def test_retry_and_failure_bookkeeping(db: Database) -> None:
    await add(db, "k")
    (claimed,) = await claim(db)
    async with db.session() as session:
        assert await outbox_claims.mark_retry(
            session, claimed.id, T0 + timedelta(seconds=30), "flood", count_attempt=False
        )
    stored = await row(db, "k")
    assert (stored.state, stored.attempts, stored.last_error) == (
        OutboxState.pending, 0, "flood",
    )
    assert await claim(db, T0 + timedelta(seconds=29)) == []
    (claimed,) = await claim(db, T0 + timedelta(seconds=30))
    async with db.session() as session:
        assert await outbox_claims.mark_retry(
            session, claimed.id, T0 + timedelta(seconds=31), "5xx"
        )
    assert (await row(db, "k")).attempts == 1
    (claimed,) = await claim(db, T0 + timedelta(seconds=31))
    async with db.session() as session:
        assert await outbox_claims.mark_failed(session, claimed.id, "x" * 900, attempt=2)
    stored = await row(db, "k")
    assert stored.state == OutboxState.failed and len(stored.last_error or "") == 500


async def test_unreachable_chats_fail_fast(db: Database) -> None:
    await add(db, "before", 777)
    async with db.session() as session:
        blocked = "Forbidden: bot was blocked"
        assert await chat_status.mark_chat_unreachable(session, 777, blocked) == 1
    assert (await row(db, "before")).state == OutboxState.failed
    await add(db, "after", 777)
    await add(db, "other", 778)
    assert [r.dedup_key for r in await claim(db)] == ["other"]
    async with db.session() as session:
        assert await outbox_claims.fail_unreachable(session, T0) == 1
        status = await session.get(ChatStatus, 777)
    assert status is not None and status.unreachable_since is not None
    assert status.reason == "Forbidden: bot was blocked"
    after = await row(db, "after")
    assert after.state == OutboxState.failed
    assert after.last_error == "chat unreachable: Forbidden: bot was blocked"
    async with db.session() as session:
        assert await chat_status.mark_chat_reachable(session, 777)
        assert not await chat_status.mark_chat_reachable(session, 777)  # nothing to clear
        assert not await chat_status.mark_chat_reachable(session, 778)
    await add(db, "back", 777)
    assert [r.dedup_key for r in await claim(db)] == ["back"]


async def test_edits_wait_for_their_target_and_newer_revisions_supersede(db: Database) -> None:
    await add(db, "status", GROUP_A)
    async with db.session() as session:
        for rev in (2, 3):
            assert await outbox.enqueue_edit(
                session, reply_to_key="status", dedup_key=f"status:rev{rev}",
                text=f"rev {rev}", now=T0,
            )
        with pytest.raises(LookupError):
            await outbox.enqueue_edit(session, reply_to_key="nope", dedup_key="x", text="x")
    assert (await row(db, "status:rev2")).last_error == outbox.SUPERSEDED
    edit = await row(db, "status:rev3")
    assert (edit.chat_id, edit.method, edit.reply_to_key) == (GROUP_A, "editMessageText", "status")
    # Another chat's row is not held up by the waiting edit.
    await add(db, "elsewhere", GROUP_B)
    (target, other) = await claim(db)
    assert (target.dedup_key, other.dedup_key) == ("status", "elsewhere")
    async with db.session() as session:
        await outbox_claims.mark_sent(session, target.id, 99, T0)
    (claimed,) = await claim(db)
    assert claimed.dedup_key == "status:rev3"
    async with db.session() as session:
        assert await outbox_claims.targets_for(session, ["status"]) == {
            "status": (OutboxState.sent, 99)
        }
        stats = await outbox.outbox_stats(session)
    assert stats == {
        "pending": 0, "sending": 2, "sent": 1, "failed": 0, "superseded": 1,
        "unreachable_chats": 0,
    }
    # What `python -m bot check` tells an operator of it.
    report = await check_outbox(Settings(database_url=db.url))
    assert report.ok and report.detail == (
        "2 waiting to be sent, 1 sent, 0 failed, 0 unreachable chat(s)")


async def test_an_edit_of_an_unsent_target_is_not_due(db: Database) -> None:
    await add(db, "target", GROUP_A, not_before=T0 + timedelta(hours=1))
    async with db.session() as session:
        await outbox.enqueue_edit(session, reply_to_key="target", dedup_key="e", text="x", now=T0)
        assert await outbox_claims.due_count(session, T0) == 0
        assert await outbox_claims.next_due_at(session) == T0
    assert await claim(db) == []


async def test_rows_follow_a_migrated_chat(db: Database) -> None:
    await add(db, "pending", -5)
    async with db.session() as session:
        assert await chat_status.mark_chat_migrated(session, -5, -1005) == 1
    await add(db, "later", -5, not_before=T0 + timedelta(seconds=1))
    assert [(r.dedup_key, r.chat_id) for r in await claim(db)] == [("pending", -1005)]
    claimed = await claim(db, T0 + timedelta(seconds=1), exclude_chats=[-1005])
    assert [(r.dedup_key, r.chat_id) for r in claimed] == [("later", -1005)]
    assert (await row(db, "later")).chat_id == -1005
    async with db.session() as session:
        status = await session.get(ChatStatus, -5)
    assert status is not None and status.migrated_to_chat_id == -1005
    assert status.unreachable_since is None


async def test_concurrent_claims_skip_locked_rows(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers")
    for chat in range(1, 11):
        await add(db, f"m{chat}", chat)
    other = Database(db.url)
    try:
        async with db.session() as first:
            mine = await outbox_claims.claim_batch(first, limit=4, now=T0, lease_seconds=60)
            # The first transaction is still open: its rows are locked, not yet `sending`.
            async with other.session() as second:
                theirs = await outbox_claims.claim_batch(second, limit=50, now=T0, lease_seconds=60)
    finally:
        await other.dispose()
    assert len(mine) == 4 and len(theirs) == 6
    assert not {r.id for r in mine} & {r.id for r in theirs}
