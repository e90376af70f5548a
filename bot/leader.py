"""Which process runs the scheduler: exactly one, holding a lease in the database.

Every process answers updates and runs a delivery worker (outbox claims are
`FOR UPDATE SKIP LOCKED` with leases, so workers share the outbox), but only the
leader places APScheduler jobs and fires what falls due.

- The lease (storage/lease.py) is a `leader_lease` row: holder, a fencing token that
  grows on every takeover, and an expiry set from the database server's clock. The
  leader renews it every `retry_seconds` for `lease_seconds`; a follower tries every
  `retry_seconds` to take it once it has expired. A leader that stops, crashes, freezes
  (SIGSTOP, a long pause) or loses the database stops renewing, so a follower takes
  over at most `lease_seconds + retry_seconds` later (20 s with the defaults), catches
  up on what fell due meanwhile and places the jobs again. A leader stopping normally
  ends its lease at once.
- Fencing: every claim of an occurrence checks, in its own transaction, that our token
  still holds an unexpired lease (bot/scheduler.py). A leader that wakes from a freeze
  finds its renewal refused or its claims fenced: it fires nothing, removes its jobs and
  becomes a follower. Each occurrence is also claimed by its unique `ScheduleMark`, so
  nothing is sent twice in any case; nothing due is lost either, since the new leader's
  catch-up fires what fell due without a leader (late, within the grace period).
- A follower whose handler changed what is due cannot place the jobs itself: it moves
  that planner's change counter (`schedule_changes`); the leader reads the counters
  with every renewal and re-places those planners' jobs (and fires anything already
  due). `NOTIFY` on `CHANNEL` only wakes the leader sooner when LISTEN works.
- Nothing depends on a session: each exchange with the lease is one short transaction
  of its own, so PgBouncer in transaction mode is fine (with `?pgbouncer=true` on
  DATABASE_URL: no LISTEN there, and no prepared statement outlives its transaction;
  tests/test_pgbouncer.py).
- On SQLite there is a single process, always the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine
from telegram.ext import JobQueue

from bot.scheduler import Scheduler
from storage import lease
from storage.db import Database
from storage.db import postgres_engine_arguments
from storage.db import through_pgbouncer
from storage.lease import ALL_PLANNERS
from storage.lease import SCHEDULER
from storage.lease import Fence
from storage.lease import Fenced

log = logging.getLogger(__name__)

CHANNEL = "liaison_desk_schedule"
DEFAULT_RETRY_SECONDS = 5.0
DEFAULT_LEASE_SECONDS = 15.0
APPLICATION_NAME = "liaison-desk scheduler"


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Leader:
    """Runs `scheduler` on `job_queue` while this process holds the scheduler's lease."""

    def __init__(
        self,
        db: Database,
        scheduler: Scheduler,
        job_queue: JobQueue,
        *,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.db = db
        self.scheduler = scheduler
        self.job_queue = job_queue
        self.retry_seconds = retry_seconds
        self.lease_seconds = lease_seconds
        self.name = process_name()
        scheduler.process = self.name  # recorded with its heartbeat
        scheduler.on_fenced = self._fenced
        self.is_leader = False
        self.token: int | None = None
        # Until when (time.monotonic) our lease surely holds: renewals extend it.
        self._valid_until = 0.0
        # The planners' change counters as last read (storage/lease.py).
        self._seen: dict[str, int] = {}
        self._engine: AsyncEngine | None = None
        self._listener: AsyncConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def elected(self) -> bool:
        """Whether leadership is decided by the lease (PostgreSQL) or given (SQLite)."""
        return self.db.dialect == "postgresql"

    def holds(self, token: int | None = None) -> bool:
        """Whether we lead, under `token` if given, with our lease not yet run out."""
        return (self.is_leader and (token is None or token == self.token)
                and time.monotonic() < self._valid_until)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Become leader at once if possible (so a lone process has caught up before it
        answers), then keep renewing or trying in the background."""
        self._stopping = False
        if not self.elected:  # the one process; a failure to start stops it, as before
            self.is_leader = True
            self.scheduler.attach(self.job_queue)
            await self.scheduler.start()
            return
        # Its own small pool: renewals never wait behind handlers for a connection,
        # and each exchange is one short transaction (nothing stays open or locked).
        url, pooler_args = postgres_engine_arguments(self.db.url)
        self._engine = create_async_engine(
            url, pool_size=2, max_overflow=1,
            pool_pre_ping=True, pool_timeout=self.retry_seconds,
            connect_args={"timeout": self.retry_seconds, "command_timeout": self.retry_seconds,
                          "server_settings": {"application_name":
                                              f"{APPLICATION_NAME} {self.name}"[:63]},
                          **pooler_args},
        )
        await self._round()
        if not self.is_leader:
            log.info("scheduler: %s is a follower; it tries to lead every %g s",
                     self.name, self.retry_seconds)
        self._task = asyncio.create_task(self._run(), name="scheduler-leader")
        if self._starting is not None:  # renewals go on meanwhile
            await asyncio.wait({self._starting})

    async def stop(self) -> None:
        """Stop scheduling and end our lease, so a follower takes over at once."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self.is_leader:
            await self._demote("this process is stopping", release=True)
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def changed(self, planner_names: Sequence[str]) -> None:
        """A commit here changed what is due (no names: every planner). Move those
        planners' change counters, which the leader polls; a follower also NOTIFYs, to
        wake it sooner. Called before this process rebuilds (if it leads): a count that
        moved only by us needs no second rebuild when the leader next polls."""
        if not self.elected or self._engine is None:
            return
        try:
            async with self._engine.begin() as connection:
                versions = await lease.bump_changes(connection, planner_names)
                if not self.is_leader:
                    await connection.execute(text("SELECT pg_notify(:channel, '')"),
                                             {"channel": CHANNEL})
        except Exception:
            log.exception("scheduler: could not record a change for the leader (its hourly "
                          "rebuild will place it)")
            return
        if self.is_leader:
            for planner, version in versions.items():
                if self._seen.get(planner, 0) == version - 1:
                    self._seen[planner] = version

    # ------------------------------------------------------------------ the lease

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.retry_seconds)
            if self._stopping:
                break
            await self._round()

    async def _round(self) -> None:
        if self.is_leader:
            await self._renew()
        else:
            await self._try_to_lead()

    async def _try_to_lead(self) -> None:
        assert self._engine is not None
        try:
            async with self._engine.begin() as connection:
                sent = time.monotonic()
                token = await lease.acquire(connection, SCHEDULER, self.name,
                                            self.lease_seconds)
                if token is None:
                    return
                # Read before the scheduler reads the schedule: a later change is polled.
                seen = await lease.change_versions(connection)
        except Exception as exc:
            log.warning("scheduler: cannot reach the database to elect a leader: %s", exc)
            return
        if self._stopping:  # stop() began meanwhile: give it back
            await self._release(token)
            return
        self.token, self._seen = token, seen
        self._valid_until = sent + self.lease_seconds
        await self._promote(token)

    async def _renew(self) -> None:
        assert self._engine is not None
        token = self.token
        assert token is not None
        try:
            async with self._engine.begin() as connection:
                sent = time.monotonic()
                renewal = await lease.renew(connection, SCHEDULER, token, self.lease_seconds)
        except Exception as exc:
            if not self.holds(token):
                await self._demote(f"its lease ran out while it could not renew it ({exc})")
            else:
                log.warning("scheduler: could not renew the lease (%s); trying again", exc)
            return
        if not self.is_leader or self.token != token:
            return  # stepped down meanwhile (a fenced claim)
        if renewal is None:
            await self._demote("its lease expired or was taken over")
            return
        self._valid_until = sent + renewal.seconds_left
        self._apply_changes(renewal.changes)

    async def _release(self, token: int) -> None:
        if self._engine is None:
            return
        try:
            async with self._engine.begin() as connection:
                await lease.release(connection, SCHEDULER, token)
        except Exception as exc:  # it expires by itself
            log.warning("scheduler: could not end the lease (it lapses by itself): %s", exc)

    # ------------------------------------------------------------------ the role

    async def _promote(self, token: int) -> None:
        self.is_leader = True
        await self._listen()
        fence = Fence(SCHEDULER, token, self.lease_seconds,
                      still_valid=lambda: self.holds(token))
        self.scheduler.attach(self.job_queue, fence)
        self._starting = asyncio.create_task(self._start_scheduler(token),
                                             name="scheduler-start")

    async def _start_scheduler(self, token: int) -> None:
        """Catch up on what fell due without a leader, then place the jobs."""
        try:
            await self.scheduler.start()
        except Exception:
            log.exception("scheduler: %s took the lease but could not start; it gives the "
                          "lease back", self.name)
            await self._demote("it could not start the scheduler", release=True)
            return
        if self.holds(token):
            log.info("scheduler: %s is now the leader (lease #%d; caught up, jobs placed)",
                     self.name, token)

    async def _demote(self, reason: str, *, release: bool = False) -> None:
        if not self.is_leader:
            return
        token = self.token
        self.is_leader = False
        self.scheduler.detach()
        current = asyncio.current_task()
        for task in [self._starting, *self._tasks]:
            if task is not None and task is not current:
                task.cancel()
        self._starting = None
        await self._unlisten()
        if release and self.elected and token is not None:
            await self._release(token)
        self.token = None
        if self.elected:
            log.warning("scheduler: %s is no longer the leader: %s", self.name, reason)

    def _fenced(self, error: Fenced) -> None:
        """A claim was refused: our lease is gone. Step down now (the loop would at its
        next renewal)."""
        if self.is_leader and self.elected:
            self._spawn(self._demote(f"a claim was refused ({error})"))

    def _apply_changes(self, changes: dict[str, int]) -> None:
        moved = {planner for planner, version in changes.items()
                 if self._seen.get(planner) != version}
        self._seen = dict(changes)
        if not moved:
            return
        names = (None if ALL_PLANNERS in moved
                 else [name for name in moved if name in self.scheduler.planners])
        if names == []:
            return
        self._spawn(self._changed_elsewhere(names))

    async def _changed_elsewhere(self, names: Sequence[str] | None) -> None:
        """Another process changed what is due: place those jobs, and fire what is due
        already (a change that made something due before we saw it)."""
        try:
            placed = await self.scheduler.rebuild(names)
            log.info("scheduler: a change elsewhere (%s): %d job(s) placed",
                     ", ".join(names) if names else "every planner", placed)
            await self.scheduler.run_due()
        except Exception:
            log.exception("scheduler: rebuild after a change elsewhere failed")

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ NOTIFY (speed-up)

    async def _listen(self) -> None:
        assert self._engine is not None
        if through_pgbouncer(self.db.url):  # a pooled LISTEN hears nothing, or another's
            log.info("scheduler: behind PgBouncer, changes elsewhere are read every %g s",
                     self.retry_seconds)
            return
        try:
            self._listener = await self._engine.connect()
            raw = (await self._listener.get_raw_connection()).driver_connection
            await raw.add_listener(CHANNEL, self._on_notify)
        except Exception as exc:
            log.info("scheduler: no LISTEN (%s); changes elsewhere are read every %g s",
                     exc, self.retry_seconds)
            await self._unlisten()

    async def _unlisten(self) -> None:
        connection, self._listener = self._listener, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, _payload: str) -> None:
        if self.is_leader:
            self._wake.set()  # renew now, reading the change counters
