"""/swap: an officer offers to swap shifts; the other officer or a coordinator confirms.

A confirmed swap writes overrides and asks the scheduler to re-place the roster jobs.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.plans import roster as plan
from bot.services import Actor
from bot.services import Services
from bot.services import services
from core.clock import time_zone
from core.enums import Role
from core.enums import SwapStatus
from core.rotation import Shift
from core.rotation import swap_overrides
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import edit_query_message
from handlers.common import escape
from handlers.common import guarded
from handlers.common import in_group
from handlers.common import reply
from handlers.roster_common import member_named
from handlers.roster_common import member_of
from handlers.roster_common import pressed_decision
from handlers.roster_common import room_for
from handlers.roster_common import rooms_on_roster
from handlers.roster_common import shift_on
from handlers.roster_common import take_moment
from handlers.roster_common import zone_of
from i18n import Translator
from i18n.formats import fmt_date
from i18n.formats import fmt_when
from storage import outbox
from storage.models import DutyRoom
from storage.models import RosterMember
from storage.models import ShiftSwap
from storage.models import User
from storage.roster import create_swap
from storage.roster import decide_swap
from storage.roster import get_roster
from storage.roster import get_swap
from storage.roster import member_telegram_ids
from storage.roster import member_users
from storage.roster import people_of_unit
from storage.roster import roster_for_room
from storage.roster import swaps_touching
from storage.schedules import rooms_of_unit
from views.buttons import Button
from views.buttons import Style
from views.buttons import keyboard

CB = "swap"


# --------------------------------------------------------------------------- /swap


def swap_text(tr: Translator, view: plan.RosterView, swap: ShiftSwap, now: datetime) -> str:
    members = {m.id: m for m in view.members}
    zone_name = zone_of(view)
    requester = escape(members[swap.requester_member_id].name)
    counterpart = escape(members[swap.counterpart_member_id].name)
    mine = fmt_when(tr, swap.requester_shift_start, zone_name, now=now, with_zone=False)
    if swap.counterpart_shift_start == swap.requester_shift_start:
        return tr("roster.swap_text.cover", requester=requester, counterpart=counterpart,
                  shift=mine)
    theirs = fmt_when(tr, swap.counterpart_shift_start, zone_name, now=now, with_zone=False)
    return tr("roster.swap_text.swap", requester=requester, counterpart=counterpart,
              mine=mine, theirs=theirs)


async def swap_room(
    session: AsyncSession, update: Update, actor: Actor, svc: Services
) -> DutyRoom:
    """In a duty room, that room; in private, the room of the actor's unit whose roster
    they are on (a unit may have several rooms)."""
    if in_group(update) or actor.user is None or actor.user.unit_id is None:
        return await room_for(session, update, actor, svc, None)
    mine = await rooms_on_roster(session, await rooms_of_unit(session, actor.user.unit_id), actor)
    if len(mine) > 1:
        raise Refusal(actor.tr("roster.errors.swap_which_room",
                               rooms=escape(actor.tr.join(actor.tr.name(r.title)
                                                          for r in mine))))
    return mine[0] if mine else await room_for(session, update, actor, svc, None)


@guarded(Role.officer)
async def swap_command(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    args = context.args or []
    async with svc.db.session() as session:
        room = await swap_room(session, update, actor, svc)
        roster = await roster_for_room(session, room.id)
        view = await plan.load_view(session, roster, now, now + timedelta(days=400)) \
            if roster else None
        if view is None:
            raise Refusal(tr("roster.errors.empty", room=escape(tr.name(room.title))))
        today = now.astimezone(time_zone(view.roster.timezone)).date()
        day, at, rest = take_moment(args, today)
        if day is None or not rest:
            raise Refusal(tr("roster.swap_usage"))
        me = member_of(view, actor)
        if me is None:
            raise Refusal(tr("roster.errors.not_member"))
        counterpart = member_named(view, rest[0])
        if counterpart is None:
            raise Refusal(tr("roster.errors.unknown_officer", name=escape(rest[0]),
                             names=escape(tr.join(m.name for m in view.members))))
        if counterpart.id == me.id:
            raise Refusal(tr("roster.errors.same_officer"))
        mine = shift_on(view, day, at, me)
        if mine is None:
            raise Refusal(tr("roster.errors.no_own_shift", day=fmt_date(tr, day)))
        their_day, their_at, extra = take_moment(rest[1:], today)
        if extra:
            raise Refusal(tr("roster.swap_usage"))
        theirs = shift_on(view, their_day, their_at, counterpart) if their_day else mine
        if theirs is None:
            raise Refusal(tr("roster.errors.no_their_shift", name=escape(counterpart.name),
                             day=fmt_date(tr, their_day)))
        if min(mine.start, theirs.start) <= now:
            raise Refusal(tr("roster.errors.started"))
        await refuse_clashing_swap(session, tr, view, me, counterpart, mine, theirs, now)
        user = await session.get(User, actor.user.id) if actor.user else None
        swap = await create_swap(session, view.roster, requester=me,
                                 requester_shift_start=mine.start, counterpart=counterpart,
                                 counterpart_shift_start=theirs.start, actor=user, now=now,
                                 chat_id=room.chat_id)
        room_tr = Translator(svc.settings.default_language)
        buttons = keyboard([[
            Button(room_tr("roster.buttons.confirm"), f"{CB}:{swap.id}:ok", Style.success),
            Button(room_tr("roster.buttons.reject"), f"{CB}:{swap.id}:no", Style.danger),
        ]])
        # An officer without an active account cannot answer: a coordinator confirms.
        account = (await member_users(session, [counterpart])).get(counterpart.id)
        telegram = account.telegram_id if account is not None and account.active else None
        asked = "roster.swap_asked" if telegram else "roster.swap_asked_coordinator"
        request = room_tr(asked, swap=swap_text(room_tr, view, swap, now),
                          name=escape(counterpart.name))
        recipients = {"room": room.chat_id}
        if telegram:
            recipients["member"] = telegram
        else:
            users, _ = await people_of_unit(session, room.unit_id)
            recipients |= {f"coordinator{u.telegram_id}": u.telegram_id for u in users
                           if u.role.at_least(Role.coordinator)}
        for label, chat_id in recipients.items():
            if chat_id != actor.telegram_id:
                await outbox.enqueue(session, chat_id=chat_id, kind="swap_request",
                                     text=request,
                                     payload={**plan.HTML, "reply_markup": buttons},
                                     dedup_key=f"swap:{swap.id}:ask:{label}", now=now)
        sent = "roster.swap_sent" if telegram else "roster.swap_sent_coordinator"
        text = tr(sent, swap=swap_text(tr, view, swap, now), name=escape(counterpart.name))
    svc.wake_delivery()
    await reply(update, text)


async def refuse_clashing_swap(
    session: AsyncSession, tr: Translator, view: plan.RosterView, me: RosterMember,
    counterpart: RosterMember, mine: Shift, theirs: Shift, now: datetime,
) -> None:
    """A shift is in at most one live swap: refuse a swap that repeats or overlaps one
    still proposed or already confirmed."""
    starts = {mine.start, theirs.start}
    for other in await swaps_touching(session, view.roster.id, starts):
        same = {other.requester_shift_start, other.counterpart_shift_start} == starts and {
            other.requester_member_id, other.counterpart_member_id} == {me.id, counterpart.id}
        key = "duplicate_swap" if same else "overlapping_swap"
        raise Refusal(tr(f"roster.errors.{key}", swap=swap_text(tr, view, other, now),
                         status=tr(f"roster.swap_status.{other.status.value}")))


@guarded(Role.officer)
async def swap_pressed(update: Update, context: Context, actor: Actor) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    query, swap_id, accept = pressed_decision(update, tr, CB)
    async with svc.db.session() as session:
        swap = await get_swap(session, swap_id)
        if swap is None:
            raise Refusal(tr("errors.stale_button"))
        if swap.status is not SwapStatus.proposed:
            raise Refusal(tr(f"roster.errors.swap_{swap.status.value}"))
        roster = await get_roster(session, swap.roster_id)
        assert roster is not None
        view = await plan.load_view(session, roster, now, now + timedelta(days=400))
        assert view is not None
        members = {m.id: m for m in view.members}
        me = member_of(view, actor)
        is_counterpart = me is not None and me.id == swap.counterpart_member_id
        is_requester = me is not None and me.id == swap.requester_member_id
        coordinator = actor.can(Role.coordinator)
        if not (is_counterpart or coordinator or (is_requester and not accept)):
            raise Refusal(tr("roster.errors.not_yours"))
        user = await session.get(User, actor.user.id) if actor.user else None
        room = roster.duty_room
        room_tr = Translator(svc.settings.default_language)
        if not accept:
            status = SwapStatus.cancelled if is_requester and not coordinator \
                else SwapStatus.rejected
            await decide_swap(session, swap, status, actor=user, now=now,
                              chat_id=room.chat_id)
            result = room_tr(f"roster.swap_{status.value}", swap=swap_text(
                room_tr, view, swap, now), by=escape(actor.user.full_name if actor.user
                                                     else ""))
        else:
            if min(swap.requester_shift_start, swap.counterpart_shift_start) <= now:
                raise Refusal(tr("roster.errors.started"))
            overrides = confirm_overrides(tr, view, swap, members)
            await decide_swap(session, swap, SwapStatus.confirmed, actor=user, now=now,
                              overrides=overrides, chat_id=room.chat_id)
            await plan.skip_due(session, roster.id, now)
            result = room_tr("roster.swap_confirmed", swap=swap_text(
                room_tr, view, swap, now), by=escape(actor.user.full_name if actor.user
                                                     else ""))
        await outbox.enqueue(session, chat_id=room.chat_id, kind="swap_result",
                             text=result, payload=plan.HTML,
                             dedup_key=f"swap:{swap.id}:result", now=now)
        requester = members.get(swap.requester_member_id)
        telegram = (await member_telegram_ids(session, [requester])).get(
            requester.id) if requester else None
        if telegram and telegram != actor.telegram_id:
            await outbox.enqueue(session, chat_id=telegram, kind="swap_result",
                                 text=result, payload=plan.HTML,
                                 dedup_key=f"swap:{swap.id}:result:requester", now=now)
    await svc.rescheduled(plan.NAME)
    svc.wake_delivery()
    await query.answer(tr("roster.swap_done"))
    await edit_query_message(update, result, courtesy=True)


def confirm_overrides(
    tr: Translator, view: plan.RosterView, swap: ShiftSwap, members: dict[int, RosterMember]
) -> list[tuple[datetime, int]]:
    """The overrides a confirmed swap writes, checked against the roster as it is now."""
    index = {m.id: i for i, m in enumerate(view.members)}
    if swap.requester_member_id not in index or swap.counterpart_member_id not in index:
        raise Refusal(tr("roster.errors.changed"))
    mine = view.shift_at(swap.requester_shift_start)
    if mine.start != swap.requester_shift_start or \
            view.member(mine).id != swap.requester_member_id:
        raise Refusal(tr("roster.errors.changed"))
    if swap.counterpart_shift_start == swap.requester_shift_start:
        return [(mine.start, swap.counterpart_member_id)]
    try:
        planned = swap_overrides(view.spec, swap.requester_shift_start,
                                 swap.counterpart_shift_start, view.overrides)
    except ValueError:
        raise Refusal(tr("roster.errors.changed")) from None
    if planned.get(swap.requester_shift_start) != index[swap.counterpart_member_id]:
        raise Refusal(tr("roster.errors.changed"))
    return [(start, view.members[position].id) for start, position in planned.items()]
