"""What the lookup quotas read: a person's lookups as the audit log holds them.

Nothing is counted twice: the items a person was shown are the audit log's
`contact.view` (a liaison's card) and `oncall.view` (a unit's duty lines) entries, read
through the index on (actor, action, time) of migration 0014. Lifts (`lookup.unblock`)
and alerts (`lookup.alert`) are audit entries about the person too. The rules are in
core/quota.py.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import BindParameter
from sqlalchemy import CompoundSelect
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import bindparam
from sqlalchemy import cast
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import null
from sqlalchemy import select
from sqlalchemy import union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.enums import Role
from core.quota import AlertKind
from core.quota import Item
from core.quota import View
from storage.access import audit_many
from storage.access import audit_row
from storage.models import AuditEntry
from storage.models import Unit
from storage.models import User
from storage.models import ZoneMembership
from storage.units import zone_ids_of

# What counts: a card, a unit's duty lines. `oncall.overview` (the reader's own zones'
# duty rooms, /oncall without arguments) is audited but not counted.
COUNTED = ("contact.view", "oncall.view")
REFUSED, ALERT, UNBLOCK = "lookup.refused", "lookup.alert", "lookup.unblock"

A = AuditEntry


def counted_items(rows: Sequence[dict[str, Any]]) -> set[Item]:
    """The items among audit rows about to be written (`storage.access.audit_row`s)."""
    return {(row["subject_type"], row["subject_id"]) for row in rows
            if row["action"] in COUNTED}


def views_of(rows: Sequence[dict[str, Any]], at: datetime) -> list[View]:
    """Audit rows about to be written, as the pattern rules read them."""
    return [View(at, None if (unit := row["detail"].get("unit_id")) is None else str(unit),
                 row["detail"].get("query"), row["detail"].get("offset"))
            for row in rows if row["action"] in COUNTED]


def _mine(telegram_id: int | BindParameter[int],
          since: datetime | BindParameter[datetime]) -> list[Any]:
    return [A.actor_telegram_id == telegram_id, A.action.in_(COUNTED), A.at > since]


ViewKey = tuple[str | None, str | None, int | None]  # unit, query, offset


@dataclass
class History:
    """What the quotas read of a person, in one round trip (`read_history`): each item's
    and each page's last showing, the last lift and alerts. The rules apply their own
    windows to it (core.quota), so it may hold a little more than they count."""

    seen: dict[Item, datetime] = field(default_factory=dict)
    views: dict[ViewKey, View] = field(default_factory=dict)
    lifted_at: datetime | None = None
    alerts: dict[AlertKind, datetime] = field(default_factory=dict)

    def merge(self, newer: History) -> None:
        """Add a later read: each item, page and mark keeps its latest time, so rows
        read twice (the overlap) change nothing."""
        for item, at in newer.seen.items():
            self.seen[item] = max(at, self.seen.get(item, at))
        for key, view in newer.views.items():
            if key not in self.views or self.views[key].at < view.at:
                self.views[key] = view
        if newer.lifted_at is not None:
            self.lifted_at = max(newer.lifted_at, self.lifted_at or newer.lifted_at)
        for kind, at in newer.alerts.items():
            self.alerts[kind] = max(at, self.alerts.get(kind, at))


def view_key(view: View) -> ViewKey:
    return view.unit, view.query, view.offset


@dataclass
class _Memo:
    history: History  # everything after `since` of the whole read, merged since
    read_at: datetime  # the `now` of the last read
    whole_at: datetime  # the `now` of the last whole read


# A person's history as this process last read it, per database, with what this
# process has shown the person since (`shown`). Within FRESH of a read it is used as it
# is: what other processes showed the person in that time counts from the next read.
# After that only rows stamped after the last read are read, less OVERLAP (a row is
# committed a moment after it is stamped; one later than that, in a stalled
# transaction, counts from the next whole read), and everything again after REREAD,
# after a lift or an alert about the person, or if the clock went back.
FRESH = timedelta(seconds=2)
OVERLAP = timedelta(seconds=2)
REREAD = timedelta(minutes=1)
MEMO_PEOPLE = 4096
_memos: WeakKeyDictionary[Any, OrderedDict[int, _Memo]] = WeakKeyDictionary()


def _memos_of(session: AsyncSession) -> OrderedDict[int, _Memo]:
    """The memos of the session's database (its connection pool: the read-only and the
    writing sessions of one database share it)."""
    bind = session.get_bind()
    return _memos.setdefault(bind.engine.pool, OrderedDict())


async def history(session: AsyncSession, telegram_id: int, *, now: datetime,
                  since: datetime, views_since: datetime) -> History:
    """The person's lookups as the quotas read them (`read_history`), the day read whole
    at most once a REREAD and only its newest rows in between: a heavy reader's
    lookups cost no more than a light one's."""
    memos = _memos_of(session)
    memo = memos.pop(telegram_id, None)
    if memo is None or now < memo.read_at or now - memo.whole_at >= REREAD:
        memo = _Memo(await read_history(session, telegram_id, since=since,
                                        views_since=views_since), now, now)
    elif now - memo.read_at >= FRESH:
        start = memo.read_at - OVERLAP
        memo.history.merge(await read_history(session, telegram_id, since=start,
                                              views_since=start))
        memo.read_at = now
    memos[telegram_id] = memo
    while len(memos) > MEMO_PEOPLE:
        memos.popitem(last=False)
    return memo.history


def shown(session: AsyncSession, telegram_id: int, rows: Sequence[dict[str, Any]],
          now: datetime) -> None:
    """What a lookup admitted shows the person (its audit rows, about to be written),
    added to the person's memo so the next lookup within FRESH counts it."""
    memo = _memos_of(session).get(telegram_id)
    if memo is not None:
        memo.history.merge(History({item: now for item in counted_items(rows)},
                                   {view_key(v): v for v in views_of(rows, now)}))


def _history_statement() -> CompoundSelect[Any]:
    """`read_history`'s statement, built once (its parameters bound per read)."""
    text, number = String(), Integer()
    unit = A.detail["unit_id"].as_integer()
    query, offset = A.detail["query"].as_string(), A.detail["offset"].as_integer()
    kind = A.detail["kind"].as_string()
    person: BindParameter[int] = bindparam("person")
    since: BindParameter[datetime] = bindparam("since")
    views_since: BindParameter[datetime] = bindparam("views_since")
    seen = select(literal("seen"), A.subject_type, A.subject_id, cast(null(), number),
                  cast(null(), number), func.max(A.at)) \
        .where(*_mine(person, since)).group_by(A.subject_type, A.subject_id)
    views = select(literal("view"), cast(query, text), cast(null(), text), unit, offset,
                   func.max(A.at)) \
        .where(*_mine(person, views_since)).group_by(unit, query, offset)
    marks = select(literal("mark"), A.action, cast(kind, text), cast(null(), number),
                   cast(null(), number), func.max(A.at)) \
        .where(A.action.in_((ALERT, UNBLOCK)), A.subject_type == "user",
               A.subject_id == bindparam("person_key"), A.at > since) \
        .group_by(A.action, kind)
    return union_all(seen, views, marks)


HISTORY = _history_statement()


async def read_history(session: AsyncSession, telegram_id: int, *, since: datetime,
                       views_since: datetime) -> History:
    """The person's lookups as the audit log holds them, in one statement of three parts:

    - each item shown after `since`, with when it was last shown;
    - each unit, and each page of a search, shown after `views_since`, with when it
      was last shown (grouped in the database, so re-reading the same counterparts all
      day costs no more than reading them once);
    - the last lift and the last alert of each kind about the person after `since`.
    """
    found = History()
    for part, first, second, unit_id, page, at in await session.execute(
            HISTORY, {"person": telegram_id, "person_key": str(telegram_id), "since": since,
                      "views_since": views_since}):
        if part == "seen":
            found.seen[(first or "", second or "")] = at
        elif part == "view":
            view = View(at, None if unit_id is None else str(unit_id), first, page)
            found.views[view_key(view)] = view
        elif first == UNBLOCK:
            found.lifted_at = at
        elif second in AlertKind.__members__:
            found.alerts[AlertKind(second)] = at
    return found


async def units_browsed(session: AsyncSession, telegram_id: int,
                        since: datetime) -> list[tuple[str, int]]:
    """The units whose items the person was shown after `since`, with how many
    distinct items of each, most first: what an alert names."""
    unit = A.detail["unit_id"].as_integer()
    items = select(A.subject_type, A.subject_id, unit.label("unit_id")) \
        .where(*_mine(telegram_id, since)).distinct().subquery()
    count = func.count().label("items")
    rows = await session.execute(
        select(Unit.name, count).join(items, items.c.unit_id == Unit.id)
        .group_by(Unit.id, Unit.name).order_by(count.desc(), Unit.id))
    return [(name, items_of_unit) for name, items_of_unit in rows]


async def alert_recipients(session: AsyncSession, user: User) -> list[User]:
    """Who is told about the person's lookups: the active coordinators of the zones of
    the person's unit (a member or a partner; a city bureau: its province's);
    administrators when those zones have none (or the person has no unit). Never the
    person themself."""
    base = (select(User).options(selectinload(User.unit))
            .where(User.active.is_(True), User.id != user.id).order_by(User.id))
    if user.unit_id is not None:
        peers = select(ZoneMembership.unit_id).where(
            ZoneMembership.zone_id.in_(zone_ids_of(user.unit_id)))
        found = list((await session.execute(base.where(
            User.role == Role.coordinator, User.unit_id.in_(peers)))).scalars())
        if found:
            return found
    return list((await session.execute(base.where(User.role == Role.admin))).scalars())


async def record(session: AsyncSession, action: str, *, now: datetime,
                 **fields: Any) -> None:
    """An audit entry at `now`, the clock the quotas count by; a lift or an alert about
    a person makes the next lookup read the person's history whole."""
    await audit_many(session, [{**audit_row(action, **fields), "at": now}])
    if action in (ALERT, UNBLOCK) and fields.get("subject_type") == "user":
        _memos_of(session).pop(int(fields["subject_id"]), None)
