"""Request queries and units of work on both databases: numbering, routing, state
changes with their events, audit and outbox rows, concurrent presses, escalations, lists
and statistics."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select

from core import requests as rules
from core.enums import RequestStatus
from core.enums import Urgency
from core.periods import Period
from core.request_checks import Draft
from core.request_checks import DraftProblem
from core.request_checks import Policy
from core.request_checks import Verdict
from core.requests import Action
from core.requests import Filters
from core.requests import Press
from core.requests import Scope
from services import requests as service
from storage import requests as store
from storage.access import user_by_telegram_id
from storage.db import Database
from storage.models import AssistanceRequest
from storage.models import AuditEntry
from storage.models import OutboxMessage
from storage.models import RequestCounter
from storage.models import RequestEvent
from storage.models import Unit
from tests.test_requests_support import SICHUAN_ROOM
from tests.test_requests_support import T0
from tests.test_requests_support import Directory
from tests.test_requests_support import make_directory

POLICY = Policy()


@pytest.fixture
async def directory(db: Database) -> Directory:
    return await make_directory(db)


async def create(
    db: Database, d: Directory, *targets: int, urgency: Urgency = Urgency.flash,
    subject: str = "协查涉枪线索", now=T0, **extra: object,
) -> list[AssistanceRequest]:
    async with db.session() as session:
        actor = await user_by_telegram_id(session, d.requester)
        assert actor is not None
        created = await service.create_requests(
            session,
            Draft(target_unit_ids=list(targets or [d.sichuan]), mechanism_id=d.mechanism,
                        urgency=urgency, subject=subject, **extra),  # type: ignore[arg-type]
            actor=actor, now=now, policy=POLICY,
        )
        return created.requests


async def act(
    db: Database, telegram_id: int, action: Action, request: AssistanceRequest,
    version: int | None = None, now=T0 + timedelta(minutes=5), **extra: object,
) -> service.Outcome:
    async with db.session() as session:
        actor = await user_by_telegram_id(session, telegram_id)
        assert actor is not None
        return await service.act_on_request(
            session, Press(action, request.id, version or request.version), actor=actor,
            now=now, policy=POLICY, **extra,  # type: ignore[arg-type]
        )


async def outbox(db: Database) -> dict[str, OutboxMessage]:
    async with db.session() as session:
        rows = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        return {row.dedup_key: row for row in rows}


async def reload(db: Database, number: str) -> AssistanceRequest:
    async with db.session() as session:
        found = await store.load_request(session, number=number)
        assert found is not None
        return found


# --------------------------------------------------------------------------- creation


async def test_numbers_are_readable_and_sequential_per_year(
    db: Database, directory: Directory
) -> None:
    first, second = await create(db, directory, directory.sichuan, directory.chongqing)
    assert (first.number, second.number) == ("XZ-2026-000001", "XZ-2026-000002")
    assert first.group_key and first.group_key == second.group_key
    (third,) = await create(db, directory)
    assert third.number == "XZ-2026-000003" and third.group_key is None
    # The year is the Beijing year: 2026-12-31 17:00 UTC is already 2027 there.
    (fourth,) = await create(db, directory, now=T0.replace(month=12, day=31, hour=17))
    assert fourth.number == "XZ-2027-000001"


async def test_concurrent_creators_never_share_a_number(
    db: Database, directory: Directory
) -> None:
    created = await asyncio.gather(*(create(db, directory) for _ in range(4)))
    numbers = sorted(r.number for batch in created for r in batch)
    assert numbers == [f"XZ-2026-00000{i}" for i in range(1, 5)]


async def test_creation_routes_to_the_duty_room_with_buttons_on_version_one(
    db: Database, directory: Directory
) -> None:
    (request,) = await create(db, directory, details="详情：一支猎枪遗失。",
                              attachments=[{"type": "photo", "file_id": "AgAD-photo-1"},
                                           {"type": "document", "file_id": "BQAD-doc-1",
                                            "name": "线索.pdf"}])
    stored = await reload(db, request.number)
    assert stored.version == 1
    assert stored.routed_at == T0
    key = f"request:{request.number}:route:room1"
    assert stored.route_key == key
    rows = await outbox(db)
    card = rows[key]
    assert card.chat_id == SICHUAN_ROOM and card.payload["parse_mode"] == "HTML"
    assert "🔴特急" in card.payload["text"] and "协查涉枪线索" in card.payload["text"]
    assert "云南省公安厅 → 四川省公安厅" in card.payload["text"]
    data = [b["callback_data"] for row in card.payload["reply_markup"]["inline_keyboard"]
            for b in row]
    assert data == [f"rq:{code}:{stored.id}:1" for code in ("acc", "dec", "tra", "cmp")]
    photo, document = rows[f"{key}:att0"], rows[f"{key}:att1"]
    assert (photo.method, photo.payload["photo"], photo.reply_to_key) == (
        "sendPhoto", "AgAD-photo-1", key)
    assert (document.method, document.payload["document"]) == ("sendDocument", "BQAD-doc-1")
    assert [e.action for e in stored.events] == ["created", "routed"]
    async with db.session() as session:
        audit = (await session.execute(
            select(AuditEntry).where(AuditEntry.action == "request.create"))).scalar_one()
    assert audit.subject_id == request.number and audit.actor_telegram_id == directory.requester


async def test_a_unit_without_a_duty_room_is_undelivered_and_its_liaisons_told(
    db: Database, directory: Directory
) -> None:
    (request,) = await create(db, directory, directory.chongqing)
    stored = await reload(db, request.number)
    assert stored.routed_at is None and stored.route_key is None
    rows = await outbox(db)
    liaison = [row for key, row in rows.items() if ":liaison:" in key]
    assert [row.chat_id for row in liaison] == [directory.cq_liaison]
    assert "尚未登记值班室" in liaison[0].payload["text"]
    assert [e.action for e in stored.events] == ["created", "undelivered"]
    assert stored.events[-1].note == "刘洋"
    # Coordinators find it in the undelivered list.
    async with db.session() as session:
        coordinator = await user_by_telegram_id(session, directory.coordinator)
        found, total = await store.list_requests(
            session, Filters(scope=Scope.all, undelivered=True), viewer=coordinator)
    assert total == 1 and found[0].number == request.number


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"subject": "   "}, "subject_empty"),
        ({"subject": "长" * (rules.SUBJECT_MAX + 1)}, "subject_too_long"),
        ({"details": "长" * (rules.DETAILS_MAX + 1)}, "details_too_long"),
        ({"reply_due_at": T0 - timedelta(minutes=1)}, "deadline_past"),
        ({"attachments": [{"type": "photo", "file_id": "x"}] * (rules.ATTACHMENTS_MAX + 1)},
         "too_many_attachments"),
    ],
)
async def test_invalid_drafts_store_nothing(
    db: Database, directory: Directory, changes: dict[str, object], code: str
) -> None:
    with pytest.raises(DraftProblem) as problem:
        await create(db, directory, **changes)  # type: ignore[arg-type]
    assert problem.value.code == code
    await _nothing_stored(db)


async def test_own_and_unknown_units_are_refused(db: Database, directory: Directory) -> None:
    for targets, code in (([directory.yunnan], "own_unit_target"), ([9999], "unknown_target"),
                          ([], "no_target")):
        with pytest.raises(DraftProblem) as problem:
            async with db.session() as session:
                actor = await user_by_telegram_id(session, directory.requester)
                await service.create_requests(
                    session, Draft(targets, directory.mechanism, Urgency.routine, "主题"),
                    actor=actor, now=T0, policy=POLICY)  # type: ignore[arg-type]
        assert problem.value.code == code
    await _nothing_stored(db)


async def _nothing_stored(db: Database) -> None:
    async with db.session() as session:
        for model in (AssistanceRequest, RequestEvent, OutboxMessage, RequestCounter):
            assert await session.scalar(select(func.count()).select_from(model)) == 0


# --------------------------------------------------------------------------- state changes


async def test_accept_records_event_audit_edits_the_card_and_tells_the_requester(
    db: Database, directory: Directory
) -> None:
    (request,) = await create(db, directory)
    outcome = await act(db, directory.duty, Action.accept, request)
    assert outcome.verdict is Verdict.done
    stored = await reload(db, request.number)
    assert stored.status is RequestStatus.accepted and stored.version == 2
    assert stored.acknowledged_at == T0 + timedelta(minutes=5)
    event = stored.events[-1]
    assert (event.action, event.from_status, event.to_status, event.actor.full_name) == (
        "accept", "open", "accepted", "李静")
    rows = await outbox(db)
    edit = rows[f"request:{request.number}:state:v2:room"]
    assert edit.method == "editMessageText" and edit.reply_to_key == stored.route_key
    assert "已接收" in edit.payload["text"] and "李静" in edit.payload["text"]
    buttons = [b["callback_data"] for row in edit.payload["reply_markup"]["inline_keyboard"]
               for b in row]
    assert buttons == [f"rq:tra:{stored.id}:2", f"rq:cmp:{stored.id}:2"]
    told = rows[f"request:{request.number}:state:v2:requester"]
    assert told.chat_id == directory.requester and "已接收" in told.payload["text"]
    async with db.session() as session:
        audit = (await session.execute(
            select(AuditEntry).where(AuditEntry.action == "request.accept"))).scalar_one()
    assert audit.actor_telegram_id == directory.duty and audit.detail["version"] == 2


async def test_a_stale_button_changes_nothing_and_says_who_was_first(
    db: Database, directory: Directory
) -> None:
    (request,) = await create(db, directory)
    await act(db, directory.duty, Action.accept, request)
    again = await act(db, directory.duty2, Action.accept, request, version=1)
    assert again.verdict is Verdict.stale
    assert again.first is not None and again.first.actor.full_name == "李静"
    decline = await act(db, directory.duty2, Action.decline, request, version=2, note="不属实")
    assert decline.verdict is Verdict.stale  # not allowed once accepted
    stored = await reload(db, request.number)
    assert stored.version == 2 and [e.action for e in stored.events][-1] == "accept"


async def test_only_the_target_unit_or_a_coordinator_may_act(
    db: Database, directory: Directory
) -> None:
    (request,) = await create(db, directory)
    for outsider in (directory.outsider, directory.requester, directory.cq_liaison):
        outcome = await act(db, outsider, Action.accept, request)
        assert outcome.verdict is Verdict.not_allowed
    assert (await reload(db, request.number)).status is RequestStatus.open
    assert (await act(db, directory.coordinator, Action.accept, request)).verdict is \
        Verdict.done
    # The requesting side withdraws; the target side cannot.
    (other,) = await create(db, directory)
    assert (await act(db, directory.duty, Action.cancel, other, note="x")).verdict is \
        Verdict.not_allowed
    assert (await act(db, directory.requester, Action.cancel, other, note="已破案")).verdict \
        is Verdict.done


async def test_forged_buttons_find_nothing(db: Database, directory: Directory) -> None:
    (request,) = await create(db, directory)
    async with db.session() as session:
        actor = await user_by_telegram_id(session, directory.duty)
        outcome = await service.act_on_request(
            session, Press(Action.accept, request.id + 100, 1), actor=actor, now=T0,
            policy=POLICY)  # type: ignore[arg-type]
    assert outcome.verdict is Verdict.not_found
    assert rules.parse_action_data(f"rq:acc:{request.id}:1") is not None
    for forged in ("rq:acc:1", "rq:xyz:1:1", "rq:acc:-1:1", "rq:acc:1:1:extra", "rq:acc:01:1",
                   "", None, "rq:acc:1:0"):
        assert rules.parse_action_data(forged) is None


async def test_decline_and_complete_need_a_note(db: Database, directory: Directory) -> None:
    (request,) = await create(db, directory)
    empty = await act(db, directory.duty, Action.decline, request, note="  ")
    assert (empty.verdict, empty.problem) == (Verdict.invalid, "note_empty")
    declined = await act(db, directory.duty, Action.decline, request, note="不属于本单位管辖")
    assert declined.verdict is Verdict.done
    stored = await reload(db, request.number)
    assert stored.status is RequestStatus.declined and stored.acknowledged_at is not None
    rows = await outbox(db)
    told = rows[f"request:{request.number}:state:v2:requester"]
    assert "不属于本单位管辖" in told.payload["text"]
    (other,) = await create(db, directory)
    await act(db, directory.duty, Action.accept, other)
    done = await act(db, directory.duty2, Action.complete, other, version=2, note="已核实，见附件")
    assert done.verdict is Verdict.done
    stored = await reload(db, other.number)
    assert stored.status is RequestStatus.completed and stored.result == "已核实，见附件"
    assert stored.completed_at == T0 + timedelta(minutes=5)


async def test_transfer_creates_a_numbered_copy_routed_to_the_new_unit(
    db: Database, directory: Directory
) -> None:
    (request,) = await create(db, directory, reply_due_at=T0 + timedelta(days=1))
    async with db.session() as session:
        chongqing = await session.get(Unit, directory.chongqing)
    same = await act(db, directory.duty, Action.transfer, request,
                     transfer_to=await _unit(db, directory.sichuan))
    assert (same.verdict, same.problem) == (Verdict.invalid, "transfer_same_unit")
    outcome = await act(db, directory.duty, Action.transfer, request, transfer_to=chongqing,
                        note="属重庆管辖")
    assert outcome.verdict is Verdict.done and outcome.new_request is not None
    original = await reload(db, request.number)
    copy = await reload(db, outcome.new_request.number)
    assert original.status is RequestStatus.transferred
    assert original.transferred_to is not None and original.transferred_to.number == copy.number
    assert copy.number == "XZ-2026-000002" and copy.to_unit_id == directory.chongqing
    assert copy.from_unit_id == directory.yunnan and copy.created_by.full_name == "杨丽华"
    assert copy.reply_due_at == original.reply_due_at and copy.status is RequestStatus.open
    assert copy.group_key == original.group_key is not None
    assert [e.action for e in copy.events] == ["transferred_in", "undelivered"]
    rows = await outbox(db)
    told = rows[f"request:{request.number}:state:v{original.version}:requester"]
    assert copy.number in told.payload["text"] and "重庆市公安局" in told.payload["text"]
    assert any(":liaison:" in key and copy.number in key for key in rows)


async def _unit(db: Database, unit_id: int) -> Unit:
    async with db.session() as session:
        found = await session.get(Unit, unit_id)
        assert found is not None
        return found


async def test_two_presses_at_once_make_one_change(db: Database, directory: Directory) -> None:
    (request,) = await create(db, directory)
    outcomes = await asyncio.gather(
        act(db, directory.duty, Action.accept, request),
        act(db, directory.duty2, Action.accept, request),
    )
    verdicts = sorted(o.verdict.value for o in outcomes)
    assert verdicts == ["done", "stale"]
    loser = next(o for o in outcomes if o.verdict is Verdict.stale)
    winner = next(o for o in outcomes if o.verdict is Verdict.done)
    assert loser.first is not None and loser.first.actor_id == winner.request.events[-1].actor_id
    stored = await reload(db, request.number)
    assert [e.action for e in stored.events].count("accept") == 1 and stored.version == 2
    rows = await outbox(db)
    assert len([k for k in rows if ":state:" in k]) == 2  # one edit, one requester notice


async def test_concurrent_different_actions_make_one_change(
    db: Database, directory: Directory
) -> None:
    (request,) = await create(db, directory)
    outcomes = await asyncio.gather(
        act(db, directory.duty, Action.accept, request),
        act(db, directory.duty2, Action.decline, request, note="非我辖区"),
        act(db, directory.coordinator, Action.complete, request, note="已处理"),
    )
    assert sorted(o.verdict.value for o in outcomes) == ["done", "stale", "stale"]
    stored = await reload(db, request.number)
    assert stored.version == 2 and len(stored.events) == 3


# --------------------------------------------------------------------------- escalations


async def test_escalations_only_while_unanswered(db: Database, directory: Directory) -> None:
    (request,) = await create(db, directory, reply_due_at=T0 + timedelta(hours=3))
    due = T0 + timedelta(minutes=15)
    async with db.session() as session:
        loaded = await store.load_request(session, number=request.number)
        assert await service.remind_room(session, loaded, now=due, policy=POLICY)
        assert await service.alert_coordinators(session, loaded, now=due,
                                                policy=POLICY)
    rows = await outbox(db)
    remind = rows[f"request:{request.number}:escalate:remind_room"]
    assert remind.chat_id == SICHUAN_ROOM and remind.reply_to_key == request.route_key
    assert "超时未接收" in remind.payload["text"]
    alerts = [row for key, row in rows.items() if ":escalate:coordinators:" in key]
    assert [row.chat_id for row in alerts] == [directory.coordinator]  # same zone, not 甘肃
    assert "Request overdue" in alerts[0].payload["text"]  # in the coordinator's language
    await act(db, directory.duty, Action.accept, request)
    async with db.session() as session:
        loaded = await store.load_request(session, number=request.number)
        assert not await service.remind_room(session, loaded, now=due, policy=POLICY)
        assert await service.flag_reply_overdue(session, loaded, now=T0 + timedelta(hours=3),
                                                policy=POLICY)
    rows = await outbox(db)
    assert rows[f"request:{request.number}:reply_overdue:room"].chat_id == SICHUAN_ROOM
    assert rows[f"request:{request.number}:reply_overdue:requester"].chat_id == \
        directory.requester


async def test_escalation_candidates(db: Database, directory: Directory) -> None:
    (flash,) = await create(db, directory)
    (routine,) = await create(db, directory, urgency=Urgency.routine,
                              reply_due_at=T0 + timedelta(hours=2))
    async with db.session() as session:
        soon = [r.number for r in await store.escalation_candidates(
            session, T0 + timedelta(minutes=20))]
        later = [r.number for r in await store.escalation_candidates(
            session, T0 + timedelta(hours=3))]
    assert soon == [flash.number]
    assert later == [flash.number, routine.number]


# --------------------------------------------------------------------------- lists and stats


async def test_lists_show_each_unit_its_own_requests(db: Database, directory: Directory) -> None:
    (to_sichuan,) = await create(db, directory)
    (to_chongqing,) = await create(db, directory, directory.chongqing, urgency=Urgency.routine)
    await act(db, directory.duty, Action.accept, to_sichuan)

    async def numbers(telegram_id: int, filters: Filters) -> list[str]:
        async with db.session() as session:
            viewer = await user_by_telegram_id(session, telegram_id)
            found, total = await store.list_requests(session, filters, viewer=viewer)
            assert total == len(found)
            return [r.number for r in found]

    assert await numbers(directory.duty, Filters()) == [to_sichuan.number]
    assert await numbers(directory.outsider, Filters()) == []
    assert await numbers(directory.requester, Filters(scope=Scope.outgoing)) == [
        to_chongqing.number, to_sichuan.number]
    assert await numbers(directory.requester, Filters(scope=Scope.incoming)) == []
    assert await numbers(directory.coordinator, Filters(scope=Scope.all)) == [
        to_chongqing.number, to_sichuan.number]
    assert await numbers(directory.requester,
                         Filters(statuses=[RequestStatus.accepted])) == [to_sichuan.number]
    assert await numbers(directory.requester, Filters(urgency=Urgency.routine)) == [
        to_chongqing.number]
    assert await numbers(directory.requester, Filters(open_only=True)) == [
        to_chongqing.number, to_sichuan.number]
    assert await numbers(directory.requester, Filters(
        period=Period(T0 + timedelta(hours=1), T0 + timedelta(hours=2)))) == []
    async with db.session() as session:
        viewer = await user_by_telegram_id(session, directory.coordinator)
        found, _ = await store.list_requests(
            session, Filters(scope=Scope.all), viewer=viewer, unit_ids=[directory.chongqing])
    assert [r.number for r in found] == [to_chongqing.number]


async def test_stats_rows_feed_the_figures(db: Database, directory: Directory) -> None:
    (a,) = await create(db, directory)
    (b,) = await create(db, directory, urgency=Urgency.routine)
    await act(db, directory.duty, Action.accept, a, now=T0 + timedelta(minutes=10))
    await act(db, directory.duty, Action.complete, a, version=2, note="ok",
              now=T0 + timedelta(hours=2))
    await act(db, directory.duty, Action.accept, b, now=T0 + timedelta(minutes=30))
    period = Period(T0 - timedelta(days=1), T0 + timedelta(days=1))
    async with db.session() as session:
        viewer = await user_by_telegram_id(session, directory.coordinator)
        rows = await store.stats_rows(session, period, viewer=viewer)
    stats = rules.compute_stats(rows, period, T0 + timedelta(hours=3))
    assert stats.total == 2
    assert stats.by_mechanism == [("治安管控互动", 2)]
    assert stats.by_unit == [("四川", 2)]
    assert dict(stats.by_status) == {RequestStatus.accepted: 1, RequestStatus.completed: 1}
    assert stats.median_ack == timedelta(minutes=20)
    assert stats.median_complete == timedelta(hours=2)
    assert stats.overdue == 0


async def test_the_migration_matches_the_models(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from storage.models import Base

    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection)  # type: ignore[arg-type]
        return [
            change for change in compare_metadata(context, Base.metadata)
            if "request" in repr(change)
        ]

    async with db.engine.connect() as connection:
        assert await connection.run_sync(diff) == []
