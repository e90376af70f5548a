"""Which process runs the scheduler: exactly one, elected with a PostgreSQL advisory lock.

Every process answers updates and runs a delivery worker (outbox claims are
`FOR UPDATE SKIP LOCKED` with leases, so workers share the outbox), but only the
leader places APScheduler jobs. Two leaders would not send anything twice (each
occurrence is claimed by its unique `ScheduleMark`), but they would do the work twice.

- Election: each process keeps one dedicated connection and tries the session-level
  `pg_try_advisory_lock(LOCK_KEY)` every `retry_seconds`. The lock lives as long as
  that session: when the leader stops, is killed, or its machine vanishes (the server's
  TCP keepalives, set short on that session, end it within about 15 s), PostgreSQL
  releases it and the next follower to try becomes leader.
- A new leader listens for changes, then starts the scheduler the usual way:
  catch-up of what fell due without a leader (fired late within the grace period,
  recorded as missed after it), then one job per future occurrence from the database.
- The leader checks its connection every `retry_seconds` (and is told at once when the
  driver sees it close); when it is gone the lock may already belong to someone else,
  so it stops scheduling (its jobs are removed) and becomes a follower again.
- A follower whose handler changed what is due cannot place the jobs itself: it sends
  `NOTIFY` on `CHANNEL` with the planner names, and the leader rebuilds those planners.
- On SQLite there is a single process, always the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from telegram.ext import JobQueue

from bot.scheduler import Scheduler
from storage.db import Database

log = logging.getLogger(__name__)

# Any constant 64-bit key; advisory locks are per database, so deployments sharing a
# PostgreSQL server do not collide.
LOCK_KEY = 0x4C44_5343_4845_4400  # "LDSCHED"
CHANNEL = "liaison_desk_schedule"
DEFAULT_RETRY_SECONDS = 5.0
# The server ends the leader's session this long after its machine stops answering.
KEEPALIVE_SETTINGS = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
APPLICATION_NAME = "liaison-desk scheduler"


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Leader:
    """Runs `scheduler` on `job_queue` while this process holds the scheduler lock."""

    def __init__(
        self,
        db: Database,
        scheduler: Scheduler,
        job_queue: JobQueue,
        *,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.db = db
        self.scheduler = scheduler
        self.job_queue = job_queue
        self.retry_seconds = retry_seconds
        self.name = process_name()
        scheduler.process = self.name  # recorded with its heartbeat
        self.is_leader = False
        self._engine: AsyncEngine | None = None
        self._connection: AsyncConnection | None = None
        self._raw: Any = None  # the asyncpg connection under _connection
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._rebuilds: set[asyncio.Task[Any]] = set()

    @property
    def elected(self) -> bool:
        """Whether leadership is decided by election (PostgreSQL) or given (SQLite)."""
        return self.db.dialect == "postgresql"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Become leader at once if possible (so a lone process schedules before it
        answers), then keep trying in the background."""
        self._stopping = False
        if not self.elected:  # the one process; a failure to start stops it, as before
            self.is_leader = True
            self.scheduler.attach(self.job_queue)
            await self.scheduler.start()
            return
        self._engine = create_async_engine(
            self.db.url, poolclass=NullPool,
            connect_args={"server_settings": {
                **KEEPALIVE_SETTINGS, "application_name": f"{APPLICATION_NAME} {self.name}"}},
        )
        await self._round()
        if not self.is_leader:
            log.info("scheduler: %s is a follower; it tries to lead every %g s",
                     self.name, self.retry_seconds)
        self._task = asyncio.create_task(self._run(), name="scheduler-leader")

    async def stop(self) -> None:
        """Stop scheduling and give the lock back (by closing its session)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self.is_leader:
            await self._demote("this process is stopping")
        await self._disconnect()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def changed(self, planner_names: Sequence[str]) -> None:
        """A commit here changed what is due; the leader has rebuilt already if it is us,
        otherwise tell it (no names: every planner). Best effort: a lost notice is
        caught by the leader's hourly rebuild."""
        if self.is_leader or not self.elected:
            return
        try:
            async with self.db.engine.connect() as connection:
                await connection.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": ",".join(planner_names)},
                )
                await connection.commit()
        except Exception:
            log.exception("scheduler: could not tell the leader about a change")

    # ------------------------------------------------------------------ election

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.retry_seconds)
            if self._stopping:
                break
            await self._round()

    async def _round(self) -> None:
        """As leader: is the lock's session still there? As follower: try for the lock."""
        try:
            if self.is_leader:
                if not await self._alive():
                    await self._demote("the connection holding the lock was lost")
                return
            if self._connection is None or not await self._alive():
                await self._connect()
            locked = await self._raw.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        except Exception as exc:
            log.warning("scheduler: cannot reach the database to elect a leader: %s", exc)
            await self._disconnect()
            return
        if locked:
            await self._promote()

    async def _alive(self) -> bool:
        if self._raw is None or self._raw.is_closed():
            return False
        try:
            await asyncio.wait_for(self._raw.fetchval("SELECT 1"), timeout=self.retry_seconds)
        except Exception:
            return False
        return True

    async def _connect(self) -> None:
        await self._disconnect()
        assert self._engine is not None
        self._connection = await self._engine.connect()
        raw = (await self._connection.get_raw_connection()).driver_connection
        raw.add_termination_listener(lambda _connection: self._wake.set())
        self._raw = raw

    async def _disconnect(self) -> None:
        """Close the lock's session (which releases the lock if we held it)."""
        connection, self._connection, self._raw = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    # ------------------------------------------------------------------ the role

    async def _promote(self) -> None:
        self.is_leader = True
        try:
            # Listen before reading the schedule: a change committed after this is
            # notified, one committed before is read.
            await self._raw.add_listener(CHANNEL, self._on_notify)
            self.scheduler.attach(self.job_queue)
            await self.scheduler.start()
        except Exception:
            log.exception("scheduler: %s won the election but could not start; retrying",
                          self.name)
            await self._demote("it could not start the scheduler")
            return
        log.info("scheduler: %s is now the leader (caught up, jobs placed)", self.name)

    async def _demote(self, reason: str) -> None:
        self.is_leader = False
        self.scheduler.detach()
        for task in list(self._rebuilds):
            task.cancel()
        await self._disconnect()
        if self.elected:
            log.warning("scheduler: %s is no longer the leader: %s", self.name, reason)

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if not self.is_leader:
            return
        names = [n for n in payload.split(",") if n in self.scheduler.planners]
        task = asyncio.create_task(self._rebuild(names or None))
        self._rebuilds.add(task)
        task.add_done_callback(self._rebuilds.discard)

    async def _rebuild(self, names: Sequence[str] | None) -> None:
        try:
            await self.scheduler.rebuild(names)
        except Exception:
            log.exception("scheduler: rebuild after a change elsewhere failed")
