"""Users, invitations, duty rooms and the audit log: the queries behind access control."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import timedelta
from enum import StrEnum
from typing import Any
from typing import cast

from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from sqlalchemy.orm import selectinload

from core.enums import Role
from storage.audit_chain import insert_sealed
from storage.audit_chain import note_written
from storage.models import AuditEntry
from storage.models import DutyRoom
from storage.models import Invitation
from storage.models import Unit
from storage.models import User

INVITATION_ALPHABET_BYTES = 12


def audit_row(
    action: str,
    *,
    actor: User | None = None,
    actor_telegram_id: int | None = None,
    chat_id: int | None = None,
    subject_type: str | None = None,
    subject_id: object = None,
    **detail: Any,
) -> dict[str, Any]:
    """An audit entry's columns (all but the time)."""
    return {
        "action": action,
        "actor_user_id": actor.id if actor else None,
        "actor_telegram_id": actor.telegram_id if actor else actor_telegram_id,
        "chat_id": chat_id,
        "subject_type": subject_type,
        "subject_id": None if subject_id is None else str(subject_id),
        "detail": detail,
    }


async def audit(session: AsyncSession, action: str, **fields: Any) -> None:
    """Record who did or saw what; written in the same unit of work as the change, and
    sealed into the audit chain once that commits (storage/audit_chain.py)."""
    session.add(AuditEntry(**audit_row(action, **fields)))
    note_written(session)


async def audit_many(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Many `audit_row`s in one statement (executemany); on SQLite sealed as they are
    inserted (storage/audit_chain.py)."""
    if not rows:
        return
    if session.get_bind().dialect.name == "sqlite":
        await insert_sealed(session, rows)
        return
    # `__table__` is typed as any FromClause (a class may be mapped to a join): ours is a Table.
    await session.execute(insert(cast(Table, AuditEntry.__table__)), list(rows))
    note_written(session)


def audit_value(value: Any) -> Any:
    """A changed field's value as an audit entry's detail holds it (JSON): dates and
    times as ISO text, enums as their value."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return value


async def user_by_telegram_id(session: AsyncSession, telegram_id: int) -> User | None:
    return (
        await session.execute(
            select(User).options(joinedload(User.unit)).where(User.telegram_id == telegram_id)
        )
    ).scalar_one_or_none()


async def ensure_administrators(
    session: AsyncSession, telegram_ids: list[int], *, default_language: str
) -> list[int]:
    """Make ADMIN_IDS administrators (creating their accounts); returns the ids promoted."""
    promoted: list[int] = []
    for telegram_id in telegram_ids:
        user = await user_by_telegram_id(session, telegram_id)
        if user is None:
            user = User(telegram_id=telegram_id, role=Role.admin, language=None)
            session.add(user)
            promoted.append(telegram_id)
        elif user.role is not Role.admin or not user.active:
            user.role, user.active = Role.admin, True
            promoted.append(telegram_id)
    if promoted:
        await session.flush()
        for telegram_id in promoted:
            await audit(session, "user.admin_from_config", actor_telegram_id=telegram_id,
                        subject_type="user", subject_id=telegram_id,
                        default_language=default_language)
    return promoted


# --------------------------------------------------------------------------- invitations


class InvitationProblem(StrEnum):
    unknown = "unknown"
    used = "used"
    expired = "expired"
    revoked = "revoked"


@dataclass(frozen=True)
class Redemption:
    user: User | None
    invitation: Invitation | None
    problem: InvitationProblem | None


def new_invitation_code() -> str:
    return secrets.token_urlsafe(INVITATION_ALPHABET_BYTES)


def invitation_problem(invitation: Invitation | None, now: datetime) -> InvitationProblem | None:
    if invitation is None:
        return InvitationProblem.unknown
    if invitation.revoked_at is not None:
        return InvitationProblem.revoked
    if invitation.used_at is not None:
        return InvitationProblem.used
    if invitation.expires_at <= now:
        return InvitationProblem.expired
    return None


async def create_invitation(
    session: AsyncSession,
    *,
    unit: Unit,
    role: Role,
    now: datetime,
    ttl: timedelta,
    created_by: User | None = None,
    note: str | None = None,
) -> Invitation:
    invitation = Invitation(
        code=new_invitation_code(),
        unit_id=unit.id,
        role=role,
        note=note,
        created_by_id=created_by.id if created_by else None,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    await session.flush()
    invitation.unit = unit
    await audit(session, "invitation.create", actor=created_by, subject_type="invitation",
                subject_id=invitation.id, unit=unit.code, role=role.value,
                expires_at=invitation.expires_at.isoformat())
    return invitation


async def invitation_by_code(session: AsyncSession, code: str, *,
                             for_update: bool = False) -> Invitation | None:
    query = select(Invitation).options(selectinload(Invitation.unit)).where(
        Invitation.code == code)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


def role_after(user: User | None, invitation: Invitation) -> Role:
    """The role an invitation gives: it never lowers an administrator."""
    return user.role if user is not None and user.role is Role.admin else invitation.role


async def redeem_invitation(
    session: AsyncSession,
    code: str,
    *,
    telegram_id: int,
    full_name: str,
    username: str | None,
    language: str | None,
    now: datetime,
) -> Redemption:
    """Link a Telegram account to the invitation's unit and role, once."""
    invitation = await invitation_by_code(session, code, for_update=True)
    problem = invitation_problem(invitation, now)
    if problem is not None:
        await audit(session, "invitation.refused", actor_telegram_id=telegram_id,
                    subject_type="invitation", subject_id=invitation.id if invitation else None,
                    problem=problem.value)
        return Redemption(None, invitation, problem)
    assert invitation is not None
    user = await user_by_telegram_id(session, telegram_id)
    if user is None:
        user = User(telegram_id=telegram_id, language=language)
        session.add(user)
    previous = {"previous_unit_id": user.unit_id,
                "previous_role": user.role.value if user.role else None} if user.id else {}
    user.full_name, user.username = full_name, username
    user.unit_id, user.active = invitation.unit_id, True
    user.role = role_after(user, invitation)
    await session.flush()
    user.unit = invitation.unit
    invitation.used_at, invitation.used_by_id = now, user.id
    await audit(session, "invitation.redeem", actor=user, subject_type="invitation",
                subject_id=invitation.id, unit=invitation.unit.code, role=user.role.value,
                **previous)
    return Redemption(user, invitation, None)


async def set_user_active(
    session: AsyncSession, user: User, active: bool, *, actor: User
) -> None:
    user.active = active
    await audit(session, "user.activate" if active else "user.deactivate", actor=actor,
                subject_type="user", subject_id=user.telegram_id)


async def set_user_language(session: AsyncSession, user: User, language: str) -> None:
    previous, user.language = user.language, language
    await audit(session, "user.language", actor=user, subject_type="user",
                subject_id=user.telegram_id, previous=previous, language=language)


# --------------------------------------------------------------------------- duty rooms


async def duty_room_by_chat(session: AsyncSession, chat_id: int) -> DutyRoom | None:
    return (
        await session.execute(
            select(DutyRoom)
            .options(selectinload(DutyRoom.unit))
            .where(DutyRoom.chat_id == chat_id, DutyRoom.active.is_(True))
        )
    ).scalar_one_or_none()


class RoomConflict(Exception):
    """The group already serves another unit; moving it must be deliberate."""

    def __init__(self, unit_name: str) -> None:
        super().__init__(unit_name)
        self.unit_name = unit_name


async def register_duty_room(
    session: AsyncSession, *, unit: Unit, chat_id: int, title: str, actor: User, now: datetime
) -> tuple[DutyRoom, int | None]:
    """Make this group the unit's duty room; returns (room, the chat it replaced, if any).

    A unit has one duty room: registering a new group moves the room (with its roster)
    to the new chat rather than leaving two rooms that both think they are on duty.
    """
    in_this_chat = (
        await session.execute(
            select(DutyRoom).options(selectinload(DutyRoom.unit)).where(DutyRoom.chat_id == chat_id)
        )
    ).scalar_one_or_none()
    if in_this_chat is not None and in_this_chat.active and in_this_chat.unit_id != unit.id:
        raise RoomConflict(in_this_chat.unit.name)
    room = (
        await session.execute(
            select(DutyRoom)
            .where(DutyRoom.unit_id == unit.id)
            .order_by(DutyRoom.active.desc(), DutyRoom.id)
        )
    ).scalars().first() or in_this_chat
    if in_this_chat is not None and in_this_chat is not room:
        in_this_chat.chat_id, in_this_chat.active = None, False
        await session.flush()
    if room is None:
        room = DutyRoom(unit_id=unit.id, title=title)
        session.add(room)
    replaced = room.chat_id if room.chat_id not in (None, chat_id) and room.active else None
    room.unit_id, room.chat_id, room.title, room.active = unit.id, chat_id, title, True
    room.registered_by_id, room.registered_at = actor.id, now
    await session.flush()
    room.unit = unit
    await audit(session, "duty_room.register", actor=actor, chat_id=chat_id,
                subject_type="duty_room", subject_id=room.id, unit=unit.code,
                replaced_chat_id=replaced)
    return room, replaced
