"""Send slots on PostgreSQL: the processes of one bot share Telegram's rate through one row.

Telegram counts a bot's messages whichever process sends them, so the processes book
the start times of their sends from a pointer in `send_budget`: the next free slot, in
seconds since the epoch by the database server's clock (`clock_timestamp()`), so
processes on machines with skewed clocks agree. A booking of n slots moves the pointer
on by n spacings in one statement, in a transaction of its own (as the leases of
storage/lease.py): the row is locked only until it commits, at once, and what was
booked belongs to the booker. PgBouncer in transaction mode is fine. Slots that are
never used (the process stopped, its sends gave up) are simply lost: a booking errs on
the side of sending less.

A booking may carry a horizon: granted only while the pointer is at most that far
ahead, so the outbox books just ahead of time and a reply booked behind it waits
little (bot/ratebudget/). Refused, it says how long until the pointer is back
within the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_BOOK = text(
    "WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) "
    "INSERT INTO send_budget AS b (bot_id, next_slot) "
    "SELECT CAST(:bot AS bigint), "
    "       clock.now + CAST(:count AS integer) * CAST(:spacing AS float8) FROM clock "
    "ON CONFLICT (bot_id) DO UPDATE "
    "SET next_slot = greatest(b.next_slot, (SELECT now FROM clock)) "
    "    + CAST(:count AS integer) * CAST(:spacing AS float8) "
    "WHERE b.next_slot <= (SELECT now FROM clock) + CAST(:horizon AS float8) "
    "RETURNING b.next_slot, (SELECT now FROM clock)"
)
_AHEAD = text(
    "SELECT next_slot - extract(epoch FROM clock_timestamp())::float8 "
    "FROM send_budget WHERE bot_id = CAST(:bot AS bigint)"
)
# A horizon no pointer reaches: a reply books whatever lies ahead.
UNBOUNDED = 1e9


@dataclass(frozen=True)
class Booking:
    """Slots `first`, `first + spacing`, … (`count` of them) by the server's clock, which
    read `server_now` during the booking. `count` 0: refused by the horizon, and the
    pointer comes back within it in `retry_in` seconds."""

    server_now: float
    first: float
    count: int
    retry_in: float = 0.0


async def book(connection: AsyncConnection, bot_id: int, count: int, spacing: float,
               horizon: float = UNBOUNDED) -> Booking:
    """Book `count` slots `spacing` seconds apart from the bot's next free one."""
    row = (await connection.execute(_BOOK, {
        "bot": bot_id, "count": count, "spacing": spacing, "horizon": horizon})).first()
    if row is not None:
        end, server_now = row
        return Booking(server_now=server_now, first=end - count * spacing, count=count)
    ahead = (await connection.execute(_AHEAD, {"bot": bot_id})).scalar_one()
    return Booking(server_now=0.0, first=0.0, count=0, retry_in=max(ahead - horizon, 0.0))
