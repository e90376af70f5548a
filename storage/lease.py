"""Leases on PostgreSQL: who runs the scheduler, fenced by a token (bot/leader.py).

One `leader_lease` row per role. Its expiry is always set and compared with the
database server's clock (`clock_timestamp()`), never a process's, so machines with
skewed clocks agree on it. Every statement here is one statement in its own
transaction (the caller's connection is in autocommit): nothing lives in a session,
nothing is left locked if the process stops between two statements, and PgBouncer in
transaction mode is fine.

- `acquire`: take the role when nobody holds it or its lease has expired; the token
  grows by one on every takeover. A row locked at that moment (its holder renewing, or
  claiming under its token) is skipped, not waited for: the follower tries next round.
- `renew`: the holder extends its lease, only while it is still unexpired and still its
  token. A lease that expired is lost, even if nobody took it yet.
- `release`: a holder stopping ends its lease now, so a follower takes over at once.
- `Fence.check`: inside a unit of work, before it commits what only the leader may do
  (claiming scheduled occurrences): the token must still hold an unexpired lease. The
  row is locked `FOR SHARE` until that transaction ends, so a takeover (an UPDATE of the
  row) happens after it commits, never during: nothing commits under an old token once
  a new one exists. A process frozen inside such a transaction would keep the row
  locked, so the transaction also gets an `idle_in_transaction_session_timeout` of one
  lease: the server ends it (rolled back) and the follower can take over.
- Schedule changes: one counter per planner that a process moves after a commit that
  changed what is due (`bump_changes`); the leader reads them when it renews and
  re-places the jobs of the planners whose counter moved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession

SCHEDULER = "scheduler"
ALL_PLANNERS = "*"


class Fenced(Exception):
    """This process's lease is gone (expired, or taken over): it must not act as leader."""


@dataclass(frozen=True)
class Renewal:
    """A renewed lease: seconds left on it by the server's clock, and every planner's
    change counter at that moment."""

    seconds_left: float
    changes: dict[str, int]


@dataclass(frozen=True)
class Holder:
    """The lease row as `python -m bot check` shows it."""

    holder: str
    token: int
    acquired_at: datetime
    expires_at: datetime
    seconds_left: float

    @property
    def expired(self) -> bool:
        return self.seconds_left <= 0


_INSERT = text(
    "INSERT INTO leader_lease (name, holder, token, acquired_at, renewed_at, expires_at) "
    "SELECT CAST(:name AS varchar), CAST(:holder AS varchar), 1, clock_timestamp(), "
    "       clock_timestamp(), clock_timestamp() + make_interval(secs => CAST(:seconds AS float8)) "
    "WHERE NOT EXISTS (SELECT FROM leader_lease WHERE name = :name) "
    "ON CONFLICT (name) DO NOTHING RETURNING token"
)
_TAKE_OVER = text(
    "WITH lapsed AS ("
    "  SELECT name FROM leader_lease WHERE name = :name AND expires_at <= clock_timestamp()"
    "  FOR UPDATE SKIP LOCKED) "
    "UPDATE leader_lease AS l SET holder = :holder, token = l.token + 1, "
    "  acquired_at = clock_timestamp(), renewed_at = clock_timestamp(), "
    "  expires_at = clock_timestamp() + make_interval(secs => CAST(:seconds AS float8)) "
    "FROM lapsed WHERE l.name = lapsed.name AND l.expires_at <= clock_timestamp() "
    "RETURNING l.token"
)
_RENEW = text(
    "UPDATE leader_lease SET renewed_at = clock_timestamp(), "
    "  expires_at = clock_timestamp() + make_interval(secs => CAST(:seconds AS float8)) "
    "WHERE name = :name AND token = CAST(:token AS bigint) AND expires_at > clock_timestamp() "
    "RETURNING extract(epoch FROM expires_at - clock_timestamp())::float8, "
    "  (SELECT coalesce(json_object_agg(planner, version), '{}')::text FROM schedule_changes)"
)
_RELEASE = text(
    "UPDATE leader_lease SET expires_at = clock_timestamp() "
    "WHERE name = :name AND token = CAST(:token AS bigint) AND expires_at > clock_timestamp()"
)
_FENCE = text(
    "SELECT set_config('idle_in_transaction_session_timeout', :idle_ms, true) "
    "FROM leader_lease WHERE name = :name AND token = CAST(:token AS bigint) "
    "AND expires_at > clock_timestamp() FOR SHARE"
)
_HOLDER = text(
    "SELECT holder, token, acquired_at, expires_at, "
    "  extract(epoch FROM expires_at - clock_timestamp())::float8 "
    "FROM leader_lease WHERE name = :name"
)
_BUMP = text(
    "INSERT INTO schedule_changes AS c (planner, version) "
    "SELECT unnest(CAST(:planners AS varchar[])), 1 "
    "ON CONFLICT (planner) DO UPDATE SET version = c.version + 1 "
    "RETURNING planner, version"
)
_CHANGES = text("SELECT planner, version FROM schedule_changes")


async def acquire(connection: AsyncConnection, name: str, holder: str,
                  seconds: float) -> int | None:
    """Take the lease if it is free or expired: the new token, else None."""
    values = {"name": name, "holder": holder, "seconds": seconds}
    token = (await connection.execute(_INSERT, values)).scalar()
    if token is None:
        token = (await connection.execute(_TAKE_OVER, values)).scalar()
    return token


async def renew(connection: AsyncConnection, name: str, token: int,
                seconds: float) -> Renewal | None:
    """Extend our unexpired lease by `seconds` from now; None if it is no longer ours."""
    row = (await connection.execute(
        _RENEW, {"name": name, "token": token, "seconds": seconds})).first()
    if row is None:
        return None
    return Renewal(seconds_left=row[0], changes=json.loads(row[1]))


async def release(connection: AsyncConnection, name: str, token: int) -> bool:
    """End our lease now (a follower may take it at once); False if it was not ours."""
    result = await connection.execute(_RELEASE, {"name": name, "token": token})
    return bool(result.rowcount)


async def holder(connection: AsyncConnection, name: str) -> Holder | None:
    row = (await connection.execute(_HOLDER, {"name": name})).first()
    return None if row is None else Holder(*row)


async def bump_changes(connection: AsyncConnection, planners: Sequence[str]) -> dict[str, int]:
    """Move the change counter of each planner (none: `ALL_PLANNERS`); the new values."""
    names = sorted(set(planners)) or [ALL_PLANNERS]
    rows = await connection.execute(_BUMP, {"planners": names})
    return {planner: version for planner, version in rows}


async def change_versions(connection: AsyncConnection) -> dict[str, int]:
    return {planner: version for planner, version in await connection.execute(_CHANGES)}


@dataclass(frozen=True)
class Fence:
    """The leader's token, checked in the transaction whose commit must be the leader's.
    `still_valid` is a local early answer (the lease's end as this process last knew
    it), so a process that wakes up after a freeze stops without asking the server."""

    name: str
    token: int
    lease_seconds: float
    still_valid: Callable[[], bool] = field(default=lambda: True, compare=False)

    async def check(self, session: AsyncSession) -> None:
        """Raise `Fenced` unless our lease holds; holds the row `FOR SHARE` (no
        takeover) until the caller's transaction ends."""
        if not self.still_valid():
            raise Fenced(f"lease {self.name} #{self.token}: past its end here")
        held = (await session.execute(_FENCE, {
            "name": self.name, "token": self.token,
            "idle_ms": str(int(self.lease_seconds * 1000))})).first()
        if held is None:
            raise Fenced(f"lease {self.name} #{self.token}: expired or taken over")


