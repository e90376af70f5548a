"""The send slots of every process of one bot, booked in PostgreSQL (storage/sendbudget.py)
and spaced for (1 - MARGIN) x DELIVERY_RATE a second: the package docstring says why."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine

from storage import sendbudget
from storage.db import postgres_engine_arguments

# Slots are spaced for this much less than the rate (the package docstring says why).
MARGIN = 0.03
LEDGER_TIMEOUT = 1.0


class SlotLedger:
    """Send start times booked in PostgreSQL for every process of one bot
    (storage/sendbudget.py), turned into this process's monotonic time."""

    def __init__(self, database_url: str, bot_id: int, rate: float) -> None:
        self.database_url = database_url
        self.bot_id = bot_id
        self.spacing = 1.0 / (rate * (1.0 - MARGIN))
        self._engine: AsyncEngine | None = None

    async def start(self) -> None:
        # A connection of its own (bookings go one at a time), as the scheduler's lease
        # has: a booking never waits behind handlers, and gives up soon when the server
        # is gone. Each booking is one short transaction (PgBouncer: storage/db.py).
        url, pooler_args = postgres_engine_arguments(self.database_url)
        self._engine = create_async_engine(
            url, pool_size=1, max_overflow=0, pool_pre_ping=True, pool_timeout=LEDGER_TIMEOUT,
            connect_args={"timeout": LEDGER_TIMEOUT, "command_timeout": LEDGER_TIMEOUT,
                          "server_settings": {"application_name": "liaison-desk send budget"},
                          **pooler_args},
        )

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def book(self, count: int, horizon: float) -> list[float] | float:
        """`count` slots (monotonic start times), or, refused by the horizon, the
        monotonic time to ask again."""
        if self._engine is None:
            raise RuntimeError("the send ledger is not started")
        async with asyncio.timeout(LEDGER_TIMEOUT), self._engine.begin() as connection:
            sent = time.monotonic()  # the connection is ready: only the statement is timed
            booking = await sendbudget.book(connection, self.bot_id, count, self.spacing,
                                            horizon)
            received = time.monotonic()
        return local_slots(booking, sent, received, self.spacing)


def local_slots(booking: sendbudget.Booking, sent: float, received: float,
                spacing: float) -> list[float] | float:
    """A booking in this process's monotonic time. The server read its clock between
    `sent` and `received`: the middle is the best guess, off by at most half the round
    trip (a fraction of a millisecond next to the database)."""
    middle = (sent + received) / 2
    if not booking.count:
        return received + booking.retry_in
    offset = booking.first - booking.server_now
    return [middle + offset + k * spacing for k in range(booking.count)]
