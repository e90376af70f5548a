"""Chair rotation: /chair shows each zone's current chair, the next one and the handover
date; /chair set (coordinators) stores a zone's order and term.

Reminders before the handover and the handover notice are sent by bot/plans/chair.py.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.ext import Application
from telegram.ext import CommandHandler

from bot.commands import CommandInfo
from bot.commands import Where
from bot.plans import chair as plan
from bot.services import Actor
from bot.services import services
from core.chair import chair_at
from core.clock import time_zone
from core.enums import Role
from handlers.common import Context
from handlers.common import Refusal
from handlers.common import escape
from handlers.common import guarded
from handlers.common import reply
from handlers.roster_common import parse_day
from i18n import Translator
from i18n.formats import fmt_when
from storage.chair import chair_rotation_for_zone
from storage.chair import chair_rotations
from storage.chair import save_chair_rotation
from storage.models import ChairRotation
from storage.models import Unit
from storage.models import User
from storage.schedules import find_zones
from storage.schedules import zone_member_ids
from storage.schedules import zones_of_unit
from storage.units import find_units

COMMANDS = [
    CommandInfo("chair", Role.officer, Where.anywhere, "chair.command"),
]
SPLIT = re.compile(r"[、,，;；\s]+")


def rotation_text(
    tr: Translator, rotation: ChairRotation, now: datetime, timezone: str
) -> str:
    spec = plan.spec_of(rotation, timezone)
    current = chair_at(spec, now)
    following = chair_at(spec, current.end)
    order = sorted(rotation.entries, key=lambda e: e.position)
    handover = current.end
    days = max(0, (handover.astimezone(time_zone(timezone)).date()
                   - now.astimezone(time_zone(timezone)).date()).days)
    chain = " → ".join(
        (f"<b>{escape(tr.name(plan.unit_name(e.unit)))}</b>" if i == current.position
         else escape(tr.name(plan.unit_name(e.unit))))
        for i, e in enumerate(order))
    lines = [
        # Terms run across years: the dates always carry theirs.
        tr("chair.view.head", zone=escape(tr.name(rotation.zone.name))),
        tr("chair.view.current",
           unit=escape(tr.name(plan.unit_name(plan.unit_at(rotation, current)))),
           since=fmt_when(tr, current.start, timezone)),
        tr("chair.view.next",
           next_unit=escape(tr.name(plan.unit_name(plan.unit_at(rotation, following)))),
           when=fmt_when(tr, handover, timezone), days=days),
        tr("chair.view.term", months=rotation.term_months),
        tr("chair.view.order", order=chain),
    ]
    return "\n".join(lines)


async def rotations_for(
    session: AsyncSession, actor: Actor, text: str
) -> list[ChairRotation]:
    tr = actor.tr
    if text:
        zones = await find_zones(session, text)
        if not zones:
            raise Refusal(tr("chair.errors.unknown_zone", zone=escape(text)))
        found = [await chair_rotation_for_zone(session, z.id) for z in zones]
        rotations = [r for r in found if r is not None and r.entries]
        if not rotations:
            raise Refusal(tr("chair.errors.no_rotation", zone=escape(tr.name(zones[0].name))))
        return rotations
    every = await chair_rotations(session)
    unit_id = actor.user.unit_id if actor.user else None
    if unit_id is not None:
        own = {z.id for z in await zones_of_unit(session, unit_id)}
        mine = [r for r in every if r.zone_id in own]
        if mine:
            return mine
    return every


@guarded(Role.officer)
async def chair_command(update: Update, context: Context, actor: Actor) -> None:
    args = context.args or []
    if args and args[0].lower() in {"set", "设置", "設置", "设定"}:
        await set_command(update, context, actor, args[1:])
        return
    svc, tr, now = services(context), actor.tr, services(context).now()
    timezone = svc.settings.bot_timezone
    async with svc.db.session() as session:
        rotations = await rotations_for(session, actor, " ".join(args).strip())
        if not rotations:
            raise Refusal(tr("chair.errors.none"))
        text = "\n\n".join(rotation_text(tr, r, now, timezone) for r in rotations)
    await reply(update, text)


async def set_command(
    update: Update, context: Context, actor: Actor, args: list[str]
) -> None:
    svc, tr, now = services(context), actor.tr, services(context).now()
    if not actor.can(Role.coordinator):
        raise Refusal(tr("errors.not_allowed"))
    if len(args) < 4:
        raise Refusal(tr("chair.set.usage"))
    zone_text, months_text, day_text = args[0], args[1], args[2]
    if not months_text.isdecimal() or len(months_text) > 3 or \
            not 1 <= int(months_text) <= 120:
        raise Refusal(tr("chair.errors.bad_term"))
    anchor = parse_day(day_text, now.astimezone(time_zone(svc.settings.bot_timezone)).date())
    if anchor is None:
        raise Refusal(tr("chair.errors.bad_day", text=escape(day_text)))
    names = [n for n in SPLIT.split(" ".join(args[3:])) if n]
    async with svc.db.session() as session:
        zones = await find_zones(session, zone_text)
        if len(zones) != 1:
            raise Refusal(tr("chair.errors.unknown_zone", zone=escape(zone_text)))
        members = set(await zone_member_ids(session, zones[0].id))
        units: list[Unit] = []
        for name in names:
            found = await find_units(session, name)
            if len(found) != 1:
                raise Refusal(tr("chair.errors.unknown_unit", unit=escape(name)))
            if found[0].id not in members:
                raise Refusal(tr("chair.errors.not_member", unit=escape(found[0].name),
                                 zone=escape(zones[0].name)))
            if found[0] in units:
                raise Refusal(tr("chair.errors.duplicate", unit=escape(found[0].name)))
            units.append(found[0])
        if len(units) < 2:
            raise Refusal(tr("chair.errors.too_few"))
        user = await session.get(User, actor.user.id) if actor.user else None
        rotation = await save_chair_rotation(
            session, zones[0], unit_ids=[u.id for u in units], term_months=int(months_text),
            anchor_date=anchor, actor=user, now=now)
        text = tr("chair.set.done") + "\n\n" + rotation_text(
            tr, rotation, now, svc.settings.bot_timezone)
        await plan.ChairPlanner(svc).skip_due(session, zones[0].id, now)
    await svc.rescheduled(plan.NAME)
    await reply(update, text)


def register(application: Application) -> None:
    application.add_handler(CommandHandler("chair", chair_command))
