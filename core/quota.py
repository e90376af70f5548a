"""Lookup quotas and scraping patterns: pure rules over what a person was shown.

The directory holds every liaison's and duty officer's phone, so one account must not
page through all of it unnoticed. What counts is an *item*: a liaison's card, or a
unit's duty lines (who is on duty, with their phone). A person may be shown at most
`Policy.hour` distinct items in any rolling hour and `Policy.day` in any rolling 24
hours; an item already shown in a window is free in it, so re-reading one's own
counterparts never uses the quota. A lookup that would go past a limit is refused as a
whole, and told when it could go. An administrator's lift starts the counts afresh.

Patterns alert even under the quota: items of many distinct units within a few minutes
(a burst), or one search paged through page after page. Each kind of alert is sent once
per episode (`alert_due`).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from datetime import timedelta
from enum import StrEnum

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# (subject type, subject id) as the audit log names what was shown: ("liaison", "12").
Item = tuple[str, str]


class Window(StrEnum):
    hour = "hour"
    day = "day"

    @property
    def length(self) -> timedelta:
        return HOUR if self is Window.hour else DAY


@dataclass(frozen=True)
class Policy:
    """The limits one person reads under (`scaled` for coordinators and administrators);
    the configuration has their defaults (bot.config.Settings.lookup_policy)."""

    hour: int
    day: int
    burst_units: int
    burst_minutes: int
    paging_pages: int

    def limit(self, window: Window) -> int:
        return self.hour if window is Window.hour else self.day

    def scaled(self, factor: int) -> Policy:
        """Counts multiplied (quotas and burst units); the paging rule stays as it is."""
        return replace(self, hour=self.hour * factor, day=self.day * factor,
                       burst_units=self.burst_units * factor)

    @property
    def burst_window(self) -> timedelta:
        return timedelta(minutes=self.burst_minutes)


def window_start(window: Window, now: datetime, since: datetime | None) -> datetime:
    """Where a window begins: its length back from now, or the last lift if later."""
    start = now - window.length
    return since if since is not None and since > start else start


def shown_in(seen: Mapping[Item, datetime], window: Window, now: datetime,
             since: datetime | None) -> dict[Item, datetime]:
    """The items (with when each was last shown) that count in `window` now. An item
    leaves a rolling window one length after it was last shown; items shown before
    the last lift do not count."""
    start = now - window.length
    return {item: at for item, at in seen.items()
            if at > start and (since is None or at >= since)}


@dataclass(frozen=True)
class Usage:
    window: Window
    count: int
    limit: int


def usage(seen: Mapping[Item, datetime], policy: Policy, now: datetime,
          since: datetime | None) -> list[Usage]:
    """Distinct items shown in each window, beside its limit."""
    return [Usage(w, len(shown_in(seen, w, now, since)), policy.limit(w)) for w in Window]


@dataclass(frozen=True)
class Verdict:
    """Whether a lookup may be shown; when refused, which window refuses it, how many
    items it holds, its limit and when this lookup would fit again."""

    allowed: bool
    window: Window | None = None
    count: int = 0
    limit: int = 0
    resume_at: datetime | None = None


ALLOWED = Verdict(True)


def verdict(seen: Mapping[Item, datetime], asked: Iterable[Item], policy: Policy,
            now: datetime, since: datetime | None = None) -> Verdict:
    """May `asked` be shown, given what was `seen` (each item's last showing)? Items
    already counted in a window are free in it; the lookup is refused as a whole when
    its new items would take a window past its limit. Of two refusing windows, the one
    that frees up later is named."""
    wanted = set(asked)
    if _all_counted(seen, wanted, now - min(w.length for w in Window), since):
        return ALLOWED  # already in every window: nothing new to count (re-reading)
    refusals = []
    for window in Window:
        shown = shown_in(seen, window, now, since)
        new = wanted - shown.keys()
        limit = policy.limit(window)
        if new and len(shown) + len(new) > limit:
            excess = len(shown) + len(new) - limit
            refusals.append(Verdict(False, window, len(shown), limit,
                                    _resume(shown, excess, window, now)))
    if not refusals:
        return ALLOWED
    return max(refusals, key=lambda v: v.resume_at or now)


def _all_counted(seen: Mapping[Item, datetime], items: Iterable[Item], start: datetime,
                 since: datetime | None) -> bool:
    """Whether every item was last shown after `start` (and not before the last lift)."""
    for item in items:
        at = seen.get(item)
        if at is None or at <= start or (since is not None and at < since):
            return False
    return True


def _resume(shown: Mapping[Item, datetime], excess: int, window: Window,
            now: datetime) -> datetime:
    """When `excess` items will have left the window: the excess-th oldest last
    showing plus the window's length. (A lookup asking for more new items than the
    whole limit never fits; configuration keeps every limit above a page.)"""
    times = sorted(shown.values())
    if not times:
        return now + window.length
    return times[min(excess, len(times)) - 1] + window.length


# --------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class View:
    """One item shown: when, of which unit, and for a page of a search, its query and
    the offset of the page."""

    at: datetime
    unit: str | None
    query: str | None = None
    offset: int | None = None


@dataclass(frozen=True)
class Pattern:
    """What looks like scraping: the units of a burst, the search paged through."""

    burst_units: tuple[str, ...] = ()
    paged_query: str | None = None
    pages: int = 0

    @property
    def found(self) -> bool:
        return bool(self.burst_units) or self.paged_query is not None


PAGING_WINDOW = HOUR


def pattern(views: Sequence[View], policy: Policy, now: datetime,
            since: datetime | None = None) -> Pattern:
    """A burst (items of `burst_units` distinct units or more within `burst_minutes`)
    and the longest paging walk (`paging_pages` pages or more of one search, in a row
    from its first, within the hour); views before the last lift do not count."""
    burst_start, paging_start = now - policy.burst_window, now - PAGING_WINDOW
    units: set[str] = set()
    offsets: dict[str, set[int]] = {}
    for v in views:
        if since is not None and v.at < since:
            continue
        if v.unit and v.at > burst_start:
            units.add(v.unit)
        if v.query is not None and v.offset is not None and v.at > paging_start:
            offsets.setdefault(v.query, set()).add(v.offset)
    burst = tuple(sorted(units)) if len(units) >= policy.burst_units else ()
    walk = max(((paging_run(pages), query) for query, pages in offsets.items()), default=None)
    if walk is not None and walk[0] >= policy.paging_pages:
        return Pattern(burst, walk[1], walk[0])
    return Pattern(burst)


def paging_run(offsets: set[int]) -> int:
    """Pages of one search seen in a row from its first: offsets 0, s, 2s … where s is
    the first page's length (the smallest offset after 0)."""
    if 0 not in offsets:
        return 0
    later = [o for o in offsets if o > 0]
    if not later:
        return 1
    step, run = min(later), 1
    while run * step in offsets:
        run += 1
    return run


# --------------------------------------------------------------------------- alerts


class AlertKind(StrEnum):
    hour = "hour"  # refused by the hourly quota
    day = "day"  # refused by the daily quota
    pattern = "pattern"  # a burst or a paging walk, under the quota


# An episode: no second alert of a kind until this long after the first (or a lift).
QUIET = {AlertKind.hour: HOUR, AlertKind.day: DAY, AlertKind.pattern: HOUR}


def alert_due(kind: AlertKind, last_alert: datetime | None, now: datetime,
              since: datetime | None) -> bool:
    """Once per episode: no alert of this kind yet, or the last one came before the
    last lift, or a quiet period ago."""
    return (last_alert is None or (since is not None and last_alert < since)
            or last_alert <= now - QUIET[kind])


def alert_key(telegram_id: int, kind: AlertKind, now: datetime,
              since: datetime | None) -> str:
    """The outbox key of an episode's alert: the same for two processes raising it at
    once, different for the next episode (a quiet period later falls in a later
    bucket; after a lift the lift differs)."""
    bucket = int(now.timestamp() // QUIET[kind].total_seconds())
    lifted = int(since.timestamp()) if since is not None else 0
    return f"lookup-alert:{telegram_id}:{kind.value}:{bucket}:{lifted}"
