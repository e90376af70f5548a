"""A scripted day of traffic against an emulator that fails 10% of calls at random.

The emulator answers a random tenth of all Bot API calls (the bot's replies and the
delivery worker's sends alike) with 429 and a `retry_after`, 500/502, a dropped
connection, or a stall. Telegram stalls for 5 seconds; here the stall is scaled down to
`STALL` seconds and the worker's read timeout to `READ_TIMEOUT`, so a stall is still a
timeout the bot gives up on (and the emulator applies the call anyway, as a slow Telegram
does: the one way a message can arrive twice) while the test stays well under a minute.

Over one day on a controllable clock (07:00 on 2 December 2026 to 08:45 the next
morning, Beijing time) officers create assistance requests that are accepted, completed
or left to escalate; the joint meeting's reminders and every roster's handover briefs
fall due; a coordinator broadcasts an early warning (the notice feature) to 110 duty
rooms, three acknowledge it (one after the reminder of the others). The background
delivery worker sends the broadcast, and in the middle of it: on PostgreSQL (a private,
throwaway cluster in a temporary directory on a free port: the shared server is never
touched) the server is stopped, a user asks something while it is down, and it is
started again; on SQLite the bot process dies with sends in flight and a new one starts
on the same database. A user whose command failed simply repeats it, as people do.

Afterwards: every request is in its expected state, escalations fired exactly where due,
every scheduled occurrence of the day was sent on time (none missed or late), every
outbox row is sent and arrived in its chat, the notice is acknowledged where pressed and
reminded everywhere else, edits (request cards, the notice's status message) show their
last text, and no chat received a message more often than once plus the calls that were
in flight when they failed (stalls, and the sends cut off by the crash; the database
restart loses no outcome).
"""

from __future__ import annotations

import asyncio
import html
import re
from collections import Counter
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.emulator import BotApiEmulator
from bot.emulator.faults import FaultKind
from core.enums import NoticeKind
from core.enums import OutboxState
from core.enums import RequestStatus
from core.enums import Severity
from core.enums import UnitLevel
from core.notices import NoticeDraft
from core.notices import NoticePolicy
from core.notices import ack_data
from services.notices import create_notice
from storage import outbox
from storage.access import user_by_telegram_id
from storage.dataio import import_file
from storage.db import Database
from storage.migrate import upgrade
from storage.models import AssistanceRequest
from storage.models import DutyRoom
from storage.models import Notice
from storage.models import NoticeDelivery
from storage.models import OutboxMessage
from storage.models import ScheduleMark
from storage.models import Unit
from tests.cluster import eventually
from tests.private_postgres import PrivatePostgres
from tools.clock import FakeClock
from tools.testing import BotHarness

STALL = 0.6  # seconds a "timeout" fault holds the answer (Telegram: about 5)
READ_TIMEOUT = 0.3  # the worker gives up on a stalled call after this long
FAULT_RATE = 0.1
# 07:00 on Wednesday 2 December 2026 in Beijing; the day ends at 08:45 the next morning.
T0 = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
END = datetime(2026, 12, 3, 0, 45, tzinfo=UTC)
TICK = timedelta(seconds=1)

# Sample data (data/sample.yaml): people and the units they belong to.
ADMIN, GANSU_COORD, CQ_COORD = 910000001, 910000002, 910000003
SC_DUTY, XJ_DUTY, SH_DUTY, SC_OFFICER = 910000004, 910000005, 910000006, 910000007
GS_DUTY, QH_OFFICER, CQ_DUTY, JS_OFFICER, SX_DUTY = (
    910000008, 910000009, 910000010, 910000011, 910000013)
PEOPLE = {
    ADMIN: ("周立新", "甘肃"), GANSU_COORD: ("马建军", "甘肃"), CQ_COORD: ("谭晓东", "重庆"),
    SC_DUTY: ("李静", "四川"), XJ_DUTY: ("买买提江", "新疆"), SH_DUTY: ("陈思远", "上海"),
    SC_OFFICER: ("王雅琴", "四川"), GS_DUTY: ("张伟", "甘肃"), QH_OFFICER: ("才让卓玛", "青海"),
    CQ_DUTY: ("刘洋", "重庆"), JS_OFFICER: ("孙浩然", "江苏"), 910000012: ("杨丽华", "昆明"),
    SX_DUTY: ("赵磊", "陕西"),
}
GS_ROOM, QH_ROOM, SC_ROOM, XJ_ROOM, CQ_ROOM, SH_ROOM, SX_ROOM = (
    -1001000000101, -1001000000102, -1001000000103, -1001000000104, -1001000000105,
    -1001000000107, -1001000000108)
EXTRA_ROOMS = 100  # broadcast audience beyond the sample's duty rooms
EXTRA_ROOM_BASE = -1002000000000


# --------------------------------------------------------------------------- the day


@dataclass
class Day:
    desk: BotHarness
    clock: FakeClock
    emulator: BotApiEmulator

    async def settle(self) -> None:
        """Deliver everything due, letting retry back-offs pass on the clock if needed."""
        for _ in range(200):
            await self.desk.deliver(timeout=60)
            async with self.desk.db.session() as session:
                # Rows held back on purpose (not_before) are not "in delivery" yet.
                waiting = (await session.execute(select(OutboxMessage.id).where(
                    OutboxMessage.state.in_([OutboxState.pending, OutboxState.sending]),
                    OutboxMessage.next_attempt_at <= self.clock.now() + timedelta(minutes=1),
                ).limit(1))).first()
            if waiting is None:
                return
            # Back-offs and leases are on the database clock: let a little time pass.
            self.clock.advance(seconds=5)
        raise AssertionError("the outbox did not drain")

    async def retrying(self, action: Callable[[], Awaitable[Any]],
                       done: Callable[[], Awaitable[bool]]) -> None:
        """Do what a user does until it took effect: a failed command is simply repeated."""
        for _ in range(8):
            await action()
            if await done():
                return
        raise AssertionError("an action never took effect")

    async def request(self, user: int, target: str, urgency: str, subject: str) -> str:
        """The one-shot form and its 提交 button; returns the new request's number."""
        async def submit() -> None:
            sent = await self.desk.send(user, f"/request {target} 治安管控互动 {urgency} {subject}")
            submit_data = [d for _, d in sent.buttons() if ":submit" in d]
            if submit_data:
                [call] = [c for c in sent.messages if c.params.get("reply_markup")][-1:]
                await self.desk.press_data(user, call, submit_data[0])

        await self.retrying(submit, lambda: self._request_exists(subject))
        async with self.desk.db.session() as session:
            return (await session.execute(select(AssistanceRequest.number).where(
                AssistanceRequest.subject == subject))).scalar_one()

    async def _request_exists(self, subject: str) -> bool:
        async with self.desk.db.session() as session:
            return (await session.execute(select(AssistanceRequest.id).where(
                AssistanceRequest.subject == subject))).first() is not None

    async def act(self, user: int, number: str, action: str, status: RequestStatus) -> None:
        """Press a button on the request's card in the duty room, as it is shown now."""
        async def press() -> None:
            async with self.desk.db.session() as session:
                request = (await session.execute(select(AssistanceRequest).where(
                    AssistanceRequest.number == number))).scalar_one()
                data = f"rq:{action}:{request.id}:{request.version}"
                card = (await session.execute(select(OutboxMessage).where(
                    OutboxMessage.dedup_key.like(f"request:{number}:route:%"),
                    OutboxMessage.telegram_message_id.is_not(None))
                )).scalars().first()
            assert card is not None, f"no card of {number} was delivered"
            await self.desk.feed(self.emulator.make_callback_update(
                user, (card.chat_id, card.telegram_message_id), data))

        async def done() -> bool:
            async with self.desk.db.session() as session:
                return (await session.execute(select(AssistanceRequest.status).where(
                    AssistanceRequest.number == number))).scalar_one() is status

        await self.retrying(press, done)

    async def broadcast(self, coordinator: int, text_: str) -> str:
        """A coordinator's early warning to every duty room (the notice feature's storage
        function, as /notice calls it on confirmation); returns its number."""
        async with self.desk.db.session() as session:
            actor = await user_by_telegram_id(session, coordinator)
            assert actor is not None
            notice = await create_notice(
                session, NoticeDraft(kind=NoticeKind.warning, severity=Severity.important,
                                     text=text_, audience={"all": True}),
                actor=actor, now=self.clock.now(),
                policy=NoticePolicy.from_settings(self.desk.settings))
            number = notice.number
        self.desk.services.wake_delivery()
        await self.desk.services.rescheduled()
        return number

    async def acknowledge(self, user: int, chat_id: int, number: str) -> None:
        """Press 收到 on the notice in a duty room, as it is shown now."""
        async def press() -> None:
            async with self.desk.db.session() as session:
                notice, delivery, room = (await session.execute(
                    select(Notice, NoticeDelivery, DutyRoom)
                    .join(NoticeDelivery, NoticeDelivery.notice_id == Notice.id)
                    .join(DutyRoom, DutyRoom.id == NoticeDelivery.duty_room_id)
                    .where(Notice.number == number, DutyRoom.chat_id == chat_id))).one()
                row = await outbox.get_message(session, delivery.message_key or "")
                assert row is not None and row.telegram_message_id is not None
                data = ack_data(notice.id, room.id, notice.revision)
            await self.desk.feed(self.emulator.make_callback_update(
                user, (chat_id, row.telegram_message_id), data))

        async def done() -> bool:
            return chat_id in (await notice_rooms(self.desk, number))[0]

        await self.retrying(press, done)


async def notice_rooms(desk: BotHarness, number: str) -> tuple[set[int], set[int]]:
    """The notice's rooms (chat ids) that acknowledged it, and those reminded."""
    async with desk.db.session() as session:
        rows = (await session.execute(
            select(DutyRoom.chat_id, NoticeDelivery.acknowledged_at, NoticeDelivery.reminded_at)
            .join(NoticeDelivery, NoticeDelivery.duty_room_id == DutyRoom.id)
            .join(Notice, Notice.id == NoticeDelivery.notice_id)
            .where(Notice.number == number))).all()
    return ({chat for chat, acked, _ in rows if acked},
            {chat for chat, _, reminded in rows if reminded})


async def seed(database_url: str, emulator: BotApiEmulator) -> list[int]:
    """Sample data, its people and duty rooms in the emulator; returns every room's chat id."""
    db = Database(database_url)
    try:
        report = await import_file(db, "data/sample.yaml")
        assert not report.problems
        async with db.session() as session:
            rooms = {r.chat_id: r.unit.short_name for r in (await session.execute(
                select(DutyRoom).options(selectinload(DutyRoom.unit)))).scalars()}
            # The broadcast's wider audience: county bureaus with a duty room each.
            extra = [EXTRA_ROOM_BASE - i for i in range(EXTRA_ROOMS)]
            for i, chat_id in enumerate(extra):
                unit = Unit(code=f"county{i}", name=f"专项县公安局{i}", short_name=f"专项{i}",
                            level=UnitLevel.county)
                session.add(unit)
                await session.flush()
                session.add(DutyRoom(unit_id=unit.id, chat_id=chat_id, title=f"专项{i}值班室"))
    finally:
        await db.dispose()
    for user_id, (name, _unit) in PEOPLE.items():
        emulator.add_user(user_id, name)
    for chat_id, unit in rooms.items():
        emulator.add_group(chat_id, f"{unit}值班室",
                           [u for u, (_n, home) in PEOPLE.items() if home == unit])
    for chat_id in extra:
        emulator.add_group(chat_id, f"专项值班室{-chat_id}")
    return [*rooms, *extra]


def plain(html_text: str) -> str:
    """What a chat shows of an HTML message."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def beijing(day: int, hour: int, minute: int = 0) -> datetime:
    """A Beijing wall-clock time on `day` December 2026, as UTC."""
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


async def scheduled_occurrences(desk: BotHarness, start: datetime = T0,
                                end: datetime = END) -> dict[str, datetime]:
    """Every occurrence the planners list in [start, end), computed from the database now."""
    assert desk.services.scheduler is not None
    found: dict[str, datetime] = {}
    async with desk.db.session() as session:
        for planner in desk.services.scheduler.planners.values():
            for occurrence in await planner.occurrences(session, start, end):
                found[occurrence.key] = occurrence.due_at
    return found


async def start_bot(database_url: str, emulator: BotApiEmulator, clock: FakeClock) -> BotHarness:
    # At Telegram's rate, as the day was written for: unlimited (the harness's default),
    # the broadcast may be over before the crash or the restart it is meant to meet.
    desk = BotHarness(emulator, database_url, admin_ids=[ADMIN], now=clock, delivery_rate=30)
    await desk.__aenter__()
    assert desk.services.delivery is not None and desk.services.scheduler is not None
    desk.services.delivery.settings.read_timeout = READ_TIMEOUT
    return desk


async def run_day(database_url: str, emulator: BotApiEmulator,
                  outage: tuple[Callable[[], None], Callable[[], None]] | None) -> None:
    """The day; with `outage` (stop and start the database server) PostgreSQL goes away
    in the middle of the broadcast, without it the bot itself dies there and restarts."""
    rooms = await seed(database_url, emulator)
    clock = FakeClock(T0)
    emulator.faults.stall_seconds = STALL
    day = Day(await start_bot(database_url, emulator, clock), clock, emulator)
    try:
        kinds: tuple[FaultKind, ...] = ("429", "500", "502", "drop", "timeout")
        for kind in kinds:  # each kind at least once, whatever the random draw
            emulator.faults.fail_next(1, kind, methods=["sendMessage"])
        emulator.faults.random(FAULT_RATE, kinds, seed=7)
        numbers: dict[str, str] = {}
        in_flight_at_crash = 0

        async def morning_requests() -> None:
            numbers["gs"] = await day.request(SC_OFFICER, "甘肃", "特急", "协查涉枪线索（一）")
            numbers["cq"] = await day.request(QH_OFFICER, "重庆", "加急", "查询涉案车辆轨迹")
            numbers["sh"] = await day.request(JS_OFFICER, "上海", "平急", "核实人员身份信息")

        async def xinjiang() -> None:
            numbers["xj"] = await day.request(SC_OFFICER, "新疆", "特急", "协查危爆物品流失")

        async def broadcast() -> None:
            """The worker sends in the background; in the middle of it, trouble."""
            nonlocal in_flight_at_crash
            text_ = "【预警】跨区域流窜盗窃团伙活动预警，请各值班室加强巡控并回复收到。"
            worker = day.desk.services.delivery
            assert worker is not None

            def reached() -> set[int | None]:
                return {c.chat_id for c in emulator.calls if c.method == "sendMessage"
                        and text_ in c.params.get("text", "")}

            worker.start()
            numbers["notice"] = await day.broadcast(GANSU_COORD, text_)
            await eventually(lambda: len(reached()) >= 30, 30, "a quarter of the rooms")
            if outage is None:
                # The process dies: calls under way are cut off, their rows stay leased
                # ("sending"); a new process on the same database sends them after the lease.
                in_flight_at_crash = worker.stats()["in_flight"]
                await worker.stop(timeout=0)
                assert len(reached()) < len(rooms), "the broadcast was over before the crash"
                await day.desk.__aexit__(None, None, None)
                day.desk = await start_bot(database_url, emulator, clock)
                return
            # PostgreSQL goes away; a user asks something while it is down, and sends
            # under way go on: what they did is recorded once it is back.
            stop_server, start_server = outage
            await asyncio.to_thread(stop_server)
            reached_when_down = len(reached())
            assert reached_when_down < len(rooms), "the broadcast was over before the restart"
            down = await day.desk.send(SC_OFFICER, "/oncall 甘肃")
            assert "四川" not in down.text  # at most the polite "not completed"
            await eventually(lambda: len(reached()) > reached_when_down, 30,
                             "a send while the database is down")
            await asyncio.to_thread(start_server)
            await worker.stop()  # waits until the outcomes are recorded

        script: dict[datetime, Callable[[], Awaitable[Any]]] = {
            beijing(2, 7, 10): morning_requests,
            beijing(2, 7, 20): lambda: day.act(GS_DUTY, numbers["gs"], "acc",
                                               RequestStatus.accepted),
            beijing(2, 8, 0): xinjiang,
            beijing(2, 9, 0): lambda: day.act(XJ_DUTY, numbers["xj"], "acc",
                                              RequestStatus.accepted),
            beijing(2, 12, 0): broadcast,
            beijing(2, 12, 10): lambda: day.acknowledge(GS_DUTY, GS_ROOM, numbers["notice"]),
            beijing(2, 12, 15): lambda: day.acknowledge(SC_DUTY, SC_ROOM, numbers["notice"]),
            # After the reminder of rooms that had not acknowledged (at 12:30).
            beijing(2, 12, 40): lambda: day.act(CQ_DUTY, numbers["cq"], "acc",
                                                RequestStatus.accepted),
            beijing(2, 12, 45): lambda: day.acknowledge(CQ_DUTY, CQ_ROOM, numbers["notice"]),
        }

        async def fire(at: datetime) -> None:
            clock.set(max(clock.now(), at))
            await day.desk.services.scheduler.run_due()  # type: ignore[union-attr]
            await day.settle()

        # The clock goes from one thing to do to the next: each scheduled occurrence
        # fires just after its due time (like the scheduler's timers), each scripted
        # action at its time, after what fell due by then. What is due is asked again
        # after each step: requests and the notice add escalations and reminders.
        await day.settle()
        moment, actions = T0, sorted(script)
        while moment < END:
            upcoming = await scheduled_occurrences(day.desk, moment, END)
            # Only what is still ahead: the clock never goes back, so the day ends.
            due_at = min((at for at in upcoming.values() if at >= moment), default=END)
            if actions and actions[0] < min(due_at, END):
                at = actions.pop(0)
                clock.set(max(clock.now(), at))
                await script[at]()
                await fire(at)
                moment = max(moment, at)
            elif due_at < END:
                await fire(due_at + TICK)
                moment = due_at + TICK
            else:
                moment = END
        await fire(END)
        emulator.faults.clear()
        await check_the_day(day.desk, numbers, rooms, in_flight_at_crash)
    finally:
        await day.desk.__aexit__(None, None, None)


async def check_the_day(desk: BotHarness, numbers: dict[str, str], rooms: list[int],
                        in_flight_at_crash: int) -> None:
    emulator = desk.emulator
    injected = emulator.faults.injected
    assert all(injected[kind] for kind in ("429", "500", "502", "drop", "timeout")), injected
    assert sum(injected.values()) >= 15, injected  # about a tenth of some 300 calls

    async with desk.db.session() as session:
        requests = {r.number: r for r in (await session.execute(
            select(AssistanceRequest))).scalars()}
        marks = {m.key: m for m in (await session.execute(select(ScheduleMark))).scalars()}
        rows = list((await session.execute(select(OutboxMessage).order_by(
            OutboxMessage.id))).scalars())

    # Requests: each where the day left it, none lost or doubled.
    assert len(requests) == 4
    expected = {"gs": RequestStatus.accepted, "xj": RequestStatus.accepted,
                "cq": RequestStatus.accepted, "sh": RequestStatus.open}
    assert {key: requests[numbers[key]].status for key in expected} == expected

    # Scheduled work: every occurrence of the day fired once, in time; none missed.
    due = await scheduled_occurrences(desk)
    assert due, "the day had nothing scheduled"
    assert {k: marks[k].outcome for k in due if k in marks} == {k: "sent" for k in due}
    escalations = {k for k in marks if ":escalate:" in k}
    assert escalations == {
        f"request:{numbers['xj']}:escalate:remind_room",  # 特急, accepted after 60 minutes
        f"request:{numbers['xj']}:escalate:alert_coordinators",
        f"request:{numbers['cq']}:escalate:remind_room",  # 加急, accepted after 5 hours
        f"request:{numbers['cq']}:escalate:alert_coordinators",
        f"request:{numbers['sh']}:escalate:remind_room",  # 平急, still open after 24 hours
    }
    # Handover briefs: 甘肃 daily at 08:30, 新疆 08:00/20:00 Urumqi time, 重庆 08:00/20:00,
    # 上海 daily at 09:00; the meeting's reminders a day and an hour before, in each room
    # of a participant that has one.
    by_room = Counter((row.kind, row.chat_id) for row in rows)
    assert {room: by_room["handover", room] for room in (GS_ROOM, XJ_ROOM, CQ_ROOM, SH_ROOM)} \
        == {GS_ROOM: 2, XJ_ROOM: 2, CQ_ROOM: 3, SH_ROOM: 1}
    assert {room: by_room["meeting_reminder", room]
            for room in (GS_ROOM, QH_ROOM, SC_ROOM, XJ_ROOM, SX_ROOM)} == dict.fromkeys(
        (GS_ROOM, QH_ROOM, SC_ROOM, XJ_ROOM, SX_ROOM), 2)

    # The outbox: every row sent, none failed or left behind.
    assert Counter(row.state for row in rows) == {OutboxState.sent: len(rows)}
    # The notice: in every room once, acknowledged where pressed, the others reminded once.
    acknowledged, reminded = await notice_rooms(desk, numbers["notice"])
    assert acknowledged == {GS_ROOM, SC_ROOM, CQ_ROOM}
    assert reminded == set(rooms) - {GS_ROOM, SC_ROOM}

    # What each chat received: every row's message at least once; copies beyond that
    # only from calls the bot gave up on while Telegram applied them (stalls).
    wanted: Counter[tuple[int, str]] = Counter(
        (row.chat_id, row.payload.get("text") or row.payload.get("caption") or "")
        for row in rows if row.method == "sendMessage")
    arrived: Counter[tuple[int, str]] = Counter(
        (c.chat_id, c.params.get("text", "")) for c in emulator.calls
        if c.method == "sendMessage" and c.ok and (c.chat_id, c.params.get("text", "")) in wanted)
    lost = {key: n for key, n in wanted.items() if arrived[key] < n}
    assert not lost, lost
    extra = sum(arrived[key] - n for key, n in wanted.items())
    stalled = sum(1 for c in emulator.calls if c.fault == "timeout" and c.method == "sendMessage")
    assert extra <= stalled + in_flight_at_crash, (extra, stalled, in_flight_at_crash)

    # Edits: every message that was edited shows its last edit.
    last_edit: dict[str, OutboxMessage] = {}
    by_key = {row.dedup_key: row for row in rows}
    for row in rows:
        if row.method == "editMessageText" and row.reply_to_key:
            last_edit[row.reply_to_key] = row
    for key, row in last_edit.items():
        target = by_key[key]
        shown = emulator.message(target.chat_id, target.telegram_message_id or 0)
        assert shown is not None and shown.get("text") == plain(row.payload["text"]), key


@pytest.mark.database("sqlite")
async def test_a_faulty_day_on_sqlite(emulator: BotApiEmulator, test_databases: Any,
                                      tmp_path: Path) -> None:
    await run_day(await test_databases.sqlite_url(tmp_path), emulator, None)


async def test_a_faulty_day_with_a_postgresql_restart(
    emulator: BotApiEmulator, private_postgres: PrivatePostgres
) -> None:
    await upgrade(private_postgres.url)
    await run_day(private_postgres.url, emulator,
                  (private_postgres.stop_server, private_postgres.start_server))
