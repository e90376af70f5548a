"""The bot removed from a duty room or blocked by an officer, and let back in: what waits
for that chat fails at once instead of being tried, and once the bot is back the chat
gets its messages again (it used to stay marked unreachable for good)."""

from __future__ import annotations

from sqlalchemy import select

from core.enums import OutboxState
from storage import outbox
from storage.models import AuditEntry
from storage.models import ChatStatus
from storage.models import OutboxMessage
from tests.conftest import SAMPLE_ADMIN
from tests.conftest import SAMPLE_OFFICER
from tests.conftest import SAMPLE_OTHER_GROUP
from tests.conftest import SAMPLE_SICHUAN_ROOM
from tools.testing import BotHarness


async def queue(desk: BotHarness, chat_id: int, key: str) -> None:
    async with desk.db.session() as session:
        await outbox.enqueue(session, chat_id=chat_id, kind="test", text=key, dedup_key=key,
                             now=desk.services.now())  # the desk's clock: due at once


async def states(desk: BotHarness) -> dict[str, tuple[OutboxState, str | None]]:
    async with desk.db.session() as session:
        rows = (await session.execute(select(OutboxMessage))).scalars()
        return {row.dedup_key: (row.state, row.last_error) for row in rows}


async def audited(desk: BotHarness) -> list[tuple[str, str | None, dict]]:
    async with desk.db.session() as session:
        rows = (await session.execute(select(AuditEntry).where(
            AuditEntry.action.startswith("chat.")).order_by(AuditEntry.id))).scalars()
        return [(row.action, row.subject_id, row.detail) for row in rows]


def texts_to(desk: BotHarness, chat_id: int) -> list[str]:
    return [c.params.get("text", "") for c in desk.emulator.calls
            if c.method == "sendMessage" and c.chat_id == chat_id and c.ok]


async def test_a_duty_room_that_removes_the_bot_and_adds_it_back(desk: BotHarness) -> None:
    emulator = desk.emulator
    await queue(desk, SAMPLE_SICHUAN_ROOM, "waiting")
    await desk.feed(emulator.make_my_chat_member_update(SAMPLE_SICHUAN_ROOM, SAMPLE_ADMIN,
                                                        "kicked"))
    state, error = (await states(desk))["waiting"]
    assert state == OutboxState.failed and error == "chat unreachable: bot kicked (my_chat_member)"
    await queue(desk, SAMPLE_SICHUAN_ROOM, "while out")
    tried = await desk.deliver()
    assert [c for c in tried.calls if c.chat_id == SAMPLE_SICHUAN_ROOM] == []  # no call at all
    assert (await states(desk))["while out"][0] == OutboxState.failed

    await desk.feed(emulator.make_my_chat_member_update(SAMPLE_SICHUAN_ROOM, SAMPLE_ADMIN,
                                                        "administrator"))
    await queue(desk, SAMPLE_SICHUAN_ROOM, "back")
    await desk.deliver()
    assert texts_to(desk, SAMPLE_SICHUAN_ROOM) == ["back"]
    async with desk.db.session() as session:
        status = await session.get(ChatStatus, SAMPLE_SICHUAN_ROOM)
    assert status is not None and status.unreachable_since is None
    room = str(SAMPLE_SICHUAN_ROOM)
    assert await audited(desk) == [
        ("chat.unreachable", room, {"status": "kicked", "failed_rows": 1}),
        ("chat.reachable", room, {"status": "administrator", "was_marked": True}),
    ]


async def test_an_officer_who_blocked_the_bot_gets_messages_again_after_unblocking(
    desk: BotHarness,
) -> None:
    emulator = desk.emulator
    # Blocked while the bot was not listening: the first refused send marks the chat.
    emulator.set_member_status(SAMPLE_OFFICER, emulator.bot_id, "kicked")
    await queue(desk, SAMPLE_OFFICER, "refused")
    await desk.deliver()
    await queue(desk, SAMPLE_OFFICER, "not tried")
    tried = await desk.deliver()
    assert [c for c in tried.calls if c.chat_id == SAMPLE_OFFICER] == []
    assert (await states(desk))["not tried"] == (
        OutboxState.failed, "chat unreachable: Forbidden: bot was blocked by the user")

    await desk.feed(emulator.make_my_chat_member_update(SAMPLE_OFFICER, SAMPLE_OFFICER, "member"))
    await queue(desk, SAMPLE_OFFICER, "welcome back")
    await desk.deliver()
    assert texts_to(desk, SAMPLE_OFFICER) == ["welcome back"]
    assert await audited(desk) == [
        ("chat.reachable", str(SAMPLE_OFFICER), {"status": "member", "was_marked": True})]


async def test_a_promotion_or_a_chat_never_marked_changes_nothing(desk: BotHarness) -> None:
    emulator = desk.emulator
    emulator.set_member_status(SAMPLE_SICHUAN_ROOM, emulator.bot_id, "member")
    await desk.feed(emulator.make_my_chat_member_update(SAMPLE_SICHUAN_ROOM, SAMPLE_ADMIN,
                                                        "administrator"))
    assert await audited(desk) == []
    # Added to a group it was never in: recorded, nothing to clear.
    await desk.feed(emulator.make_my_chat_member_update(SAMPLE_OTHER_GROUP, SAMPLE_ADMIN, "member",
                                                        old_status="left"))
    assert await audited(desk) == [
        ("chat.reachable", str(SAMPLE_OTHER_GROUP), {"status": "member", "was_marked": False})]
    await queue(desk, SAMPLE_SICHUAN_ROOM, "as before")
    await desk.deliver()
    assert texts_to(desk, SAMPLE_SICHUAN_ROOM) == ["as before"]
