"""The units, branches and zones the query parser knows (`core.vocabulary.Vocabulary`),
loaded from the database and cached per database and data epoch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession

from core.vocabulary import Suggestion
from core.vocabulary import VocabItem
from core.vocabulary import Vocabulary
from core.vocabulary import suggest as suggest_from_vocabulary
from storage.cache import data_epoch
from storage.models import Branch
from storage.models import Unit
from storage.models import Zone
from storage.models import ZoneMembership

_vocabularies: dict[str, tuple[int, Vocabulary]] = {}


def _cache_key(session: AsyncSession) -> str:
    bind = session.bind  # an engine or a connection: either's `.engine` has the URL
    return bind.engine.url.render_as_string(hide_password=True) if bind is not None else "?"


def invalidate(engine: AsyncEngine | None = None) -> None:
    """Forget the cached vocabulary (of one engine's database, or of all)."""
    if engine is None:
        _vocabularies.clear()
    else:
        _vocabularies.pop(engine.url.render_as_string(hide_password=True), None)


def strings_of(values: Any) -> tuple[str, ...]:
    """The values given, as strings, without the empty ones (a row's names and aliases)."""
    if not values:
        return ()
    return tuple(str(v) for v in values if v)


async def load_vocabulary(session: AsyncSession, *, epoch: int | None = None) -> Vocabulary:
    """The units, branches and zones the query parser knows, cached per database and
    data epoch (any change to them, by any process, moves the epoch: storage/cache.py).
    Pass the `epoch` when the caller has read it already (negative: not read)."""
    key = _cache_key(session)
    if epoch is None or epoch < 0:
        epoch = await data_epoch(session)
    cached = _vocabularies.get(key)
    if cached is not None and cached[0] == epoch:
        return cached[1]
    items: list[VocabItem] = []
    units = await session.execute(
        select(Unit.id, Unit.name, Unit.short_name, Unit.abbreviation, Unit.english, Unit.aliases)
    )
    for ident, name, short, abbreviation, english, aliases in units:
        items.append(
            VocabItem(
                "unit",
                ident,
                name,
                names=strings_of([short, english, *(aliases or [])]),
                abbreviations=strings_of([abbreviation]),
            )
        )
    branches = await session.execute(select(Branch.id, Branch.name, Branch.english, Branch.aliases))
    for ident, name, english, aliases in branches:
        items.append(
            VocabItem("branch", ident, name, names=strings_of([english, *(aliases or [])])))
    members: dict[int, set[int]] = {}
    for zone_id, unit_id in await session.execute(
        select(ZoneMembership.zone_id, ZoneMembership.unit_id)
    ):
        members.setdefault(zone_id, set()).add(unit_id)
    zones = await session.execute(
        select(Zone.id, Zone.name, Zone.short_name, Zone.english, Zone.aliases)
    )
    for ident, name, short, english, aliases in zones:
        items.append(
            VocabItem(
                "zone",
                ident,
                name,
                names=strings_of([short, english, *(aliases or [])]),
                members=frozenset(members.get(ident, ())),
            )
        )
    vocabulary = Vocabulary(items)
    _vocabularies[key] = (epoch, vocabulary)
    return vocabulary


def invalidate_after_transaction(session: AsyncSession) -> None:
    """Forget the session's database's vocabulary now and again when its transaction
    ends (another session may have cached the old one meanwhile)."""
    key = _cache_key(session)
    _vocabularies.pop(key, None)

    def drop(*_args: Any) -> None:
        _vocabularies.pop(key, None)

    sync_session = session.sync_session
    for name in ("after_commit", "after_rollback"):
        event.listen(sync_session, name, drop, once=True)


async def suggest(session: AsyncSession, query: str, *, limit: int = 5) -> list[Suggestion]:
    """Nearest units, branches and zones for a query that found nothing."""
    return suggest_from_vocabulary(query, await load_vocabulary(session), limit=limit)
