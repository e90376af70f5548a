"""Scheduling from the database: reminders, handovers, escalations, fire once each.

The database is the truth. Each feature contributes a `Planner` that, from the
database, lists its occurrences in a window around now (a meeting reminder, a shift
handover, an escalation step), each with a stable key. The scheduler:

- places one APScheduler job per future occurrence (id = key, `replace_existing`), so
  jobs are only wake-up timers and are rebuilt on start and after every change;
- on firing, claims the occurrence by inserting a `ScheduleMark` with its unique key
  (a second firing, here or in another process, inserts nothing and sends nothing),
  then lets the planner write its outbox rows in the same transaction; jobs coming due
  while that transaction runs share the next one (bot/batching.py), so a thousand
  reminders due in the same minute are a handful of transactions, not a thousand
  queued for SQLite's write lock (one that fails is retried one occurrence at a time);
- at start, catches up: occurrences that fell due while the bot was down are fired
  (marked late) if within the grace period, otherwise recorded as missed, visible to
  coordinators. "While down" is known from the database: the running scheduler beats
  (`SchedulerHeartbeat`) every minute, so the catch-up looks back to the last beat (an
  outage of a week lists a week), never before the first run on this database (a first
  start reports nothing missed) nor before the occurrence's data existed (`since`);
- with several processes (bot/leader.py), claims are fenced: each claiming transaction
  first checks that this process still holds the leader's lease under its token
  (storage/lease.py), so a leader that froze and lost the lease fires nothing when it
  wakes; the first refused claim makes it step down.

`run_due(now)` does the firing for every due, unclaimed occurrence; the APScheduler jobs
and the tests (with a controllable clock) both call it, so what runs is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

from apscheduler.jobstores.base import JobLookupError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.ext import JobQueue

from bot.batching import Batcher
from core.schedule import classify_due
from storage.db import Database
from storage.db import dialect_insert
from storage.lease import Fence
from storage.lease import Fenced
from storage.models import ScheduleMark
from storage.schedules import beat

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(minutes=15)
# How far back a sweep looks for occurrences it may have missed (a start after a longer
# outage looks back to the last heartbeat).
DEFAULT_LOOKBACK = timedelta(days=2)
HEARTBEAT_EVERY = timedelta(minutes=1)
# How far ahead jobs are placed; a periodic rebuild extends it.
DEFAULT_HORIZON = timedelta(days=8)
REBUILD_EVERY = timedelta(hours=1)
# A job whose transaction fails for want of the database is tried this often in all.
FIRE_ATTEMPTS = 4
FIRE_RETRY_DELAY = 0.5  # seconds, times the attempt number
# Marks per INSERT when occurrences are claimed together.
CLAIM_CHUNK = 200
JOB_PREFIX = "due:"
REBUILD_JOB = "scheduler:rebuild"
HEARTBEAT_JOB = "scheduler:heartbeat"


class Outcome:
    sent = "sent"
    late = "late"
    missed = "missed"


DUE_OUTCOMES = {"due": Outcome.sent, "late": Outcome.late, "missed": Outcome.missed}


@dataclass(frozen=True)
class Occurrence:
    """Something due at an instant; `key` is unique across all planners and all time.
    `since`: when the data it comes from was created, if known (nothing due before that
    is fired or reported missed)."""

    key: str
    due_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    since: datetime | None = field(default=None, compare=False)


class Planner(Protocol):
    name: str

    async def occurrences(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> Sequence[Occurrence]:
        """Every occurrence due in [start, end), computed from the database."""

    async def fire(
        self, session: AsyncSession, occurrence: Occurrence, now: datetime, late: bool
    ) -> None:
        """Write the outbox rows for this occurrence (same transaction as its mark)."""

    async def missed(self, session: AsyncSession, occurrence: Occurrence, now: datetime) -> None:
        """Record what a coordinator should know about an occurrence that was not sent."""


class FeaturePlanner:
    """What the feature planners share: the process's services and the two settings
    every plan reads (the bot's time zone and language, for rooms and people without
    their own)."""

    name: str
    # Housekeeping that does the same whenever it runs (nobody is told anything stale):
    # after an outage it runs late instead of being recorded as a missed message.
    catches_up = False

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    @property
    def default_zone(self) -> str:
        return self.svc.settings.bot_timezone

    @property
    def language(self) -> str:
        return self.svc.settings.default_language


class RowPlanner(FeaturePlanner):
    """A planner whose occurrences come from rows (notices, requests): `candidates`, the
    rows that may have something due in a window, and each row's `occurrences_of`; those
    due in the window are its occurrences."""

    candidates: Callable[[AsyncSession, datetime, datetime], Awaitable[Sequence[Any]]]
    occurrences_of: Callable[[Any], Iterable[Occurrence]]

    async def occurrences(
        self, session: AsyncSession, start: datetime, end: datetime
    ) -> Sequence[Occurrence]:
        return [occurrence for row in await self.candidates(session, start, end)
                for occurrence in self.occurrences_of(row) if start <= occurrence.due_at < end]


async def claim_occurrences(
    session: AsyncSession, marks: Sequence[tuple[Occurrence, str]], now: datetime,
    *, fence: Fence | None = None,
) -> set[str]:
    """Insert each occurrence's mark (with its outcome); returns the keys claimed now,
    leaving out those claimed before (fired or missed, here or in another process).
    With `fence` (the scheduler leader's lease) nothing is claimed unless the lease still
    holds: `Fenced` is raised and the caller's transaction rolls back."""
    if fence is not None and marks:
        await fence.check(session)
    insert = dialect_insert(session)
    claimed: set[str] = set()
    for start in range(0, len(marks), CLAIM_CHUNK):
        statement = (
            insert(ScheduleMark)
            .values([{"key": occurrence.key, "due_at": occurrence.due_at, "outcome": outcome,
                      "recorded_at": now, "detail": occurrence.data}
                     for occurrence, outcome in marks[start : start + CLAIM_CHUNK]])
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(ScheduleMark.key)
        )
        claimed.update((await session.execute(statement)).scalars())
    return claimed


async def claim_occurrence(
    session: AsyncSession, occurrence: Occurrence, outcome: str, now: datetime
) -> bool:
    """Insert the occurrence's mark; False when it was already claimed (fired or missed)."""
    return bool(await claim_occurrences(session, [(occurrence, outcome)], now))


class Scheduler:
    def __init__(
        self,
        db: Database,
        planners: Sequence[Planner],
        *,
        now: Callable[[], datetime],
        wake_delivery: Callable[[], None] = lambda: None,
        grace: timedelta = DEFAULT_GRACE,
        lookback: timedelta = DEFAULT_LOOKBACK,
        horizon: timedelta = DEFAULT_HORIZON,
    ) -> None:
        self.db = db
        self.planners = {planner.name: planner for planner in planners}
        self.now = now
        self.wake_delivery = wake_delivery
        self.grace = grace
        self.lookback = lookback
        self.horizon = horizon
        self.job_queue: JobQueue | None = None
        self.process: str | None = None
        # Set by the leader (bot/leader.py): its lease, checked by every claim, and what
        # to do when a claim is refused (step down).
        self.fence: Fence | None = None
        self.on_fenced: Callable[[Fenced], None] = lambda _error: None
        # From the heartbeat at start: the first run on this database, and the last beat
        # before this start (until the catch-up from it has run).
        self._first_alive: datetime | None = None
        self._down_since: datetime | None = None
        self._lock = asyncio.Lock()
        self.fired: dict[str, int] = {}
        self._due_now: Batcher[tuple[str, Occurrence], str | None] = Batcher(
            self._fire_batch, name="scheduler:due")

    # ------------------------------------------------------------------ running

    async def run_due(self, now: datetime | None = None) -> dict[str, int]:
        """Fire every due, unclaimed occurrence; returns counts per outcome."""
        now = now or self.now()
        counts = {Outcome.sent: 0, Outcome.late: 0, Outcome.missed: 0}
        async with self._lock:
            if self._first_alive is None:
                await self._come_alive(now)
            since = self.window_start(now)
            for planner in self.planners.values():
                # Housekeeping is owed nothing from before the first run on this database:
                # a new desk started just after a daily run does not run it late at once.
                start = max(since, self._first_alive or since) \
                    if getattr(planner, "catches_up", False) else since
                async with self.db.session() as session:
                    due = [o for o in await planner.occurrences(session, start, now)
                           if o.since is None or o.due_at >= o.since]
                    unclaimed = await self._unclaimed(session, due)
                ordered = [(planner.name, o) for o in sorted(unclaimed, key=lambda o: o.due_at)]
                for start in range(0, len(ordered), CLAIM_CHUNK):
                    for outcome in await self._fire_batch(ordered[start : start + CLAIM_CHUNK],
                                                          now):
                        if isinstance(outcome, BaseException):
                            log.error("occurrence could not fire", exc_info=outcome)
                        elif outcome:
                            counts[outcome] += 1
            self._down_since = None  # caught up: later sweeps look back the usual way
        for outcome, count in counts.items():
            self.fired[outcome] = self.fired.get(outcome, 0) + count
        return counts

    def window_start(self, now: datetime) -> datetime:
        """Where a sweep at `now` starts looking: the usual look-back, or the last beat
        before this start if that is earlier; never before the first run on this database
        (less the grace period: what a first start could still send late, it sends)."""
        start = now - self.lookback
        if self._down_since is not None:
            start = min(start, self._down_since)
        first_alive = self._first_alive or now
        return max(start, first_alive - self.grace)

    async def _come_alive(self, now: datetime) -> None:
        async with self.db.session() as session:
            first, last = await beat(session, now, self.process)
        self._first_alive, self._down_since = first or now, last

    async def _beat(self, _context: Any = None) -> None:
        async with self.db.session() as session:
            await beat(session, self.now(), self.process)

    async def _unclaimed(
        self, session: AsyncSession, occurrences: Sequence[Occurrence]
    ) -> list[Occurrence]:
        if not occurrences:
            return []
        keys = [o.key for o in occurrences]
        claimed: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            claimed |= set(
                (await session.execute(select(ScheduleMark.key).where(ScheduleMark.key.in_(chunk))))
                .scalars()
            )
        return [o for o in occurrences if o.key not in claimed]

    async def _fire_together(
        self, batch: Sequence[tuple[str, Occurrence]], now: datetime
    ) -> list[str | None]:
        """Claim and fire `batch` in one transaction; the outcome of each (None: not due,
        or claimed before). Any error rolls all of it back."""
        marks: list[tuple[Occurrence, str]] = []
        outcomes: list[str | None] = []
        for name, occurrence in batch:
            # Late: due more than a minute ago (the bot was down), within the grace period.
            verdict = classify_due(occurrence.due_at, now, self.grace)
            if verdict == "missed" and getattr(self.planners[name], "catches_up", False):
                verdict = "late"
            if verdict == "future":
                outcomes.append(None)
                continue
            outcomes.append(DUE_OUTCOMES[verdict])
            marks.append((occurrence, outcomes[-1]))
        if not marks:
            return outcomes
        async with self.db.session() as session:
            claimed = await claim_occurrences(session, marks, now, fence=self.fence)
            for index, ((name, occurrence), outcome) in enumerate(zip(batch, outcomes,
                                                                      strict=True)):
                if outcome is None or occurrence.key not in claimed:
                    outcomes[index] = None
                    continue
                claimed.discard(occurrence.key)  # the same occurrence twice: fired once
                planner = self.planners[name]
                if outcome == Outcome.missed:
                    await planner.missed(session, occurrence, now)
                else:
                    await planner.fire(session, occurrence, now, outcome == Outcome.late)
        for (_, occurrence), outcome in zip(batch, outcomes, strict=True):
            if outcome is not None:
                log.info("occurrence %s: %s", occurrence.key, outcome)
        return outcomes

    async def _fire_batch(
        self, batch: list[tuple[str, Occurrence]], now: datetime | None = None
    ) -> list[str | BaseException | None]:
        """Fire together; if that fails, one by one, so one occurrence's error (or a
        database hiccup) costs nobody else their reminder."""
        outcomes: list[str | BaseException | None] = []
        if len(batch) > 1:
            try:
                outcomes = list(await self._fire_together(batch, now or self.now()))
            except Fenced as error:
                return self._fenced(batch, error)
            except Exception as error:
                log.warning("%d occurrences could not fire together (%s); one by one",
                            len(batch), error)
        if not outcomes:
            fenced: Fenced | None = None
            for name, occurrence in batch:
                if fenced is not None:  # no use trying the rest
                    outcomes.append(None)
                    continue
                try:
                    outcomes.append(await self._fire_alone(name, occurrence, now))
                except Fenced as error:
                    fenced = error
                    outcomes.append(None)
                except Exception as error:
                    outcomes.append(error)
            if fenced is not None:
                self._fenced(batch, fenced)
        if Outcome.sent in outcomes or Outcome.late in outcomes:
            self.wake_delivery()
        return outcomes

    def _fenced(self, batch: Sequence[Any], error: Fenced) -> list[str | BaseException | None]:
        """Not the leader any more: what of `batch` had not fired is left to the leader."""
        log.warning("scheduler: occurrences not fired here (%d due together): %s",
                    len(batch), error)
        self.on_fenced(error)
        return [None] * len(batch)

    async def _fire_alone(
        self, planner_name: str, occurrence: Occurrence, now: datetime | None
    ) -> str | None:
        """A database that cannot be reached for a moment (SQLite's write lock held past
        the busy timeout, no pooled connection free in time, a dropped PostgreSQL
        connection) is tried again: the claim and the outbox rows share one transaction,
        so a failed attempt leaves nothing, and giving up would leave the occurrence to the
        hourly sweep, by then past the grace period and missed."""
        async def attempt() -> str | None:
            return (await self._fire_together([(planner_name, occurrence)],
                                              now or self.now()))[0]

        for number in range(1, FIRE_ATTEMPTS):
            try:
                return await attempt()
            except (OperationalError, SQLAlchemyTimeoutError) as error:
                log.warning("occurrence %s: attempt %d failed (%s), trying again",
                            occurrence.key, number, getattr(error, "orig", None) or error)
                await asyncio.sleep(FIRE_RETRY_DELAY * number)
        return await attempt()  # the last: its error is the caller's

    # ------------------------------------------------------------------ APScheduler

    def attach(self, job_queue: JobQueue, fence: Fence | None = None) -> None:
        """Schedule on `job_queue`; with `fence`, only while that lease holds."""
        self.job_queue = job_queue
        self.fence = fence

    def detach(self) -> None:
        """Stop scheduling here (another process leads now): remove our jobs. The fence
        stays: a firing already under way is refused by it."""
        job_queue, self.job_queue = self.job_queue, None
        if job_queue is None:
            return
        for job in job_queue.scheduler.get_jobs():
            if job.id.startswith(JOB_PREFIX) or job.id in (REBUILD_JOB, HEARTBEAT_JOB):
                with contextlib.suppress(JobLookupError):
                    job_queue.scheduler.remove_job(job.id)

    async def start(self) -> None:
        """Beat, catch up on what fell due since the last beat, then place the jobs."""
        await self._come_alive(self.now())
        await self.run_due()
        await self.rebuild()
        if self.job_queue is not None:
            self.job_queue.run_repeating(
                self._periodic_rebuild, interval=REBUILD_EVERY, first=REBUILD_EVERY,
                name=REBUILD_JOB, job_kwargs={"id": REBUILD_JOB, "replace_existing": True},
            )
            self.job_queue.run_repeating(
                self._beat, interval=HEARTBEAT_EVERY, first=HEARTBEAT_EVERY,
                name=HEARTBEAT_JOB, job_kwargs={"id": HEARTBEAT_JOB, "replace_existing": True},
            )

    async def _periodic_rebuild(self, _context: Any) -> None:
        await self.run_due()
        await self.rebuild()

    async def rebuild(self, planner_names: Sequence[str] | None = None) -> int:
        """(Re)place one job per future occurrence; drop jobs that no longer have one."""
        job_queue = self.job_queue
        if job_queue is None:
            return 0
        now = self.now()
        names = list(planner_names or self.planners)
        wanted: dict[str, tuple[str, Occurrence]] = {}
        async with self.db.session() as session:
            for name in names:
                for occurrence in await self.planners[name].occurrences(
                    session, now, now + self.horizon
                ):
                    wanted[JOB_PREFIX + name + ":" + occurrence.key] = (name, occurrence)
        if self.job_queue is not job_queue:
            return 0  # detached meanwhile: the leader is elsewhere now
        scheduler = job_queue.scheduler
        prefixes = tuple(JOB_PREFIX + name + ":" for name in names)
        for job in scheduler.get_jobs():
            if job.id.startswith(prefixes) and job.id not in wanted:
                with contextlib.suppress(JobLookupError):
                    scheduler.remove_job(job.id)
        for job_id, (name, occurrence) in wanted.items():
            job_queue.run_once(
                self._job_fired, when=occurrence.due_at, name=job_id, data=(name, occurrence),
                job_kwargs={"id": job_id, "replace_existing": True,
                            "misfire_grace_time": int(self.grace.total_seconds()),
                            "coalesce": True},
            )
        return len(wanted)

    async def _job_fired(self, context: Any) -> None:
        name, occurrence = context.job.data
        await self.fire(name, occurrence)

    async def fire(self, planner_name: str, occurrence: Occurrence) -> str | None:
        """Fire one occurrence now (its job came due); once, whoever else tries. Jobs
        coming due together share a transaction (bot/batching.py)."""
        return await self._due_now.submit((planner_name, occurrence))
