"""Broadcast benchmark: one notice to 1,000 duty rooms within Telegram's limits.

    .venv/bin/python -m bench.broadcast [--rooms 1000] [--backend sqlite|postgresql|both]

What runs is what production runs: `storage.notices.create_notice` stores the notice and
fans it out (one outbox row per room, plus the coordinator's status message) in one
transaction, and the real delivery worker (bot/delivery.py, production rates) sends the
rows through PTB's HTTP stack to the Bot API emulator in its own process, which enforces
Telegram's limits (30 sends/s overall, 20/min per group, 1/s per private chat) and answers
429 with retry_after when they are exceeded.

The figure is the ratio of the wall time from the commit of the notice until the last
room's message reached the emulator, to the time the limits allow (rooms / 30 s). Two runs:
1. clean: target ratio ≤ 1.10;
2. with 10% of calls failing at random (429 with retry_after, 500, 502, dropped
   connections, 5-second stalls): target ratio ≤ 1.5.
Both also check from the emulator's record that every room got its message exactly once.
A stalled call is applied by the emulator after the stall even if the client gave up
(as Telegram may do), so a room whose first accepted call was a stall may legitimately
get a second copy: those are counted apart ("ambiguous") and are not failures.

`run(...)` returns the figures as a dict for a combined `python -m bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.reminders import fresh_database
from bot.emulator import BotApiEmulator
from bot.services import system_now
from bot.testing import BotHarness
from storage.models import DutyRoom, NoticeKind, Role, Severity, Unit, User
from storage.notices import NoticeDraft, NoticePolicy, create_notice

GLOBAL_LIMIT = 30  # sends per second Telegram allows one bot
TARGET_CLEAN = 1.10
TARGET_FAULTS = 1.5
FAULT_RATE = 0.10
FAULT_KINDS = ("429", "500", "502", "drop", "timeout")
STALL_SECONDS = 5.0
FIRST_CHAT = -1003000000000
COORDINATOR = 9000001


def _emulator_process(conn: Any, rooms: int, faults: bool) -> None:
    """The emulator in its own process (Telegram is not in the bot's process either):
    serves until told to stop, then sends back (chat, ok, time, fault) per send call."""

    async def serve() -> None:
        emulator = BotApiEmulator()
        await emulator.start()
        emulator.add_user(COORDINATOR, "协调员")
        for i in range(rooms):
            emulator.add_group(FIRST_CHAT - i, f"值班室{i:05d}")
        emulator.enforce_limits(global_per_second=GLOBAL_LIMIT)
        if faults:
            emulator.faults.stall_seconds = STALL_SECONDS
            emulator.faults.random(FAULT_RATE, FAULT_KINDS, seed=7,
                                   methods=("sendMessage",))
        conn.send((emulator.base_url, emulator.base_file_url))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send([(c.chat_id, c.ok, c.time, c.fault, c.status) for c in emulator.calls
                   if c.method == "sendMessage"])
        await emulator.stop()

    asyncio.run(serve())


async def seed(harness: BotHarness, rooms: int) -> User:
    """`rooms` units with a duty room each, and the coordinator who sends the notice."""
    async with harness.db.session() as session:
        units = [Unit(code=f"n{i:05d}", name=f"通报单位{i:05d}", short_name=f"通报{i:05d}",
                      timezone="Asia/Shanghai") for i in range(rooms)]
        session.add_all(units)
        await session.flush()
        session.add_all([DutyRoom(unit_id=u.id, chat_id=FIRST_CHAT - i, title=f"值班室{i:05d}")
                         for i, u in enumerate(units)])
        coordinator = User(telegram_id=COORDINATOR, full_name="协调员", role=Role.coordinator)
        session.add(coordinator)
    return coordinator


async def one_run(database_url: str, *, rooms: int, faults: bool) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_emulator_process, args=(child, rooms, faults),
                              daemon=True)
    process.start()
    loop = asyncio.get_running_loop()
    base_url, file_url = await loop.run_in_executor(None, parent.recv)
    try:
        harness = BotHarness(SimpleNamespace(base_url=base_url, base_file_url=file_url),
                             database_url, now=system_now,  # type: ignore[arg-type]
                             private_per_second=1)  # Telegram's, as in production
        svc = harness.services
        coordinator = await seed(harness, rooms)
        async with harness:
            worker = svc.delivery
            assert worker is not None
            worker.start()
            draft = NoticeDraft(kind=NoticeKind.work, severity=Severity.important,
                                text="基准通报：请各值班室确认收到。", audience={"all": True})
            async with svc.db.session() as session:
                coordinator = await session.merge(coordinator)
                await create_notice(session, draft, actor=coordinator, now=svc.now(),
                                    policy=NoticePolicy.from_settings(svc.settings))
            committed = time.time()
            worker.wake()
            # Generous: every room sent once at the limit, plus retries and pauses.
            deadline = committed + 3 * rooms / GLOBAL_LIMIT + 60
            while time.time() < deadline and worker.sent < rooms + 1:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            await worker.stop()
            counters = worker.counters
        parent.send("stop")
        calls = await loop.run_in_executor(None, parent.recv)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    return figures(calls, rooms=rooms, committed=committed, faults=faults,
                   retried=counters.retried, rate_limited=counters.rate_limited,
                   failed=counters.failed)


def figures(calls: list[tuple[int, bool, float, str | None, int]], *, rooms: int,
            committed: float, faults: bool, retried: int, rate_limited: int,
            failed: int) -> dict[str, Any]:
    """Ratio, losses and duplicates from the emulator's record of send calls."""
    room_chats = {FIRST_CHAT - i for i in range(rooms)}
    accepted: dict[int, list[tuple[float, str | None]]] = collections.defaultdict(list)
    for chat_id, ok, at, fault, _ in calls:
        if ok and chat_id in room_chats:
            accepted[chat_id].append((at, fault))
    lost = len(room_chats - set(accepted))
    duplicates = ambiguous = 0
    for copies in accepted.values():
        extra = len(copies) - 1
        if extra > 0:
            # A stalled call may have been applied after the client gave up on it.
            explained = min(extra, sum(1 for _, fault in sorted(copies)[:-1]
                                       if fault == "timeout"))
            ambiguous += explained
            duplicates += extra - explained
    first = [min(at for at, _ in copies) for copies in accepted.values()]
    elapsed = max(first) - committed if first else float("nan")
    allowed = rooms / GLOBAL_LIMIT
    target = TARGET_FAULTS if faults else TARGET_CLEAN
    ratio = elapsed / allowed
    return {
        "mode": "10% faults" if faults else "clean",
        "rooms": rooms,
        "delivered": len(accepted),
        "lost": lost,
        "duplicates": duplicates,
        "ambiguous_duplicates": ambiguous,
        "seconds": round(elapsed, 2),
        "allowed_seconds": round(allowed, 2),
        "ratio": round(ratio, 3),
        "target": target,
        "ok": ratio <= target and lost == 0 and duplicates == 0,
        "calls": len(calls),
        "emulator_429": sum(1 for _, ok, _, fault, status in calls
                            if status == 429 and fault is None),
        "injected_faults": sum(1 for call in calls if call[3] is not None),
        "worker_retries": retried,
        "worker_rate_limited": rate_limited,
        "worker_failed": failed,
    }


async def run_async(rooms: int = 1000, backends: tuple[str, ...] = ("sqlite",),
                    fault_runs: tuple[bool, ...] = (False, True)) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for faults in fault_runs:
                url, cleanup = await fresh_database(backend, Path(tmp))
                try:
                    result = await one_run(url, rooms=rooms, faults=faults)
                finally:
                    if cleanup is not None:
                        await cleanup()
                result["backend"] = backend
                results["runs"].append(result)
                print_run(result)
    return results


def run(rooms: int = 1000, backends: tuple[str, ...] = ("sqlite",),
        fault_runs: tuple[bool, ...] = (False, True)) -> dict[str, Any]:
    """The figures as a dict (also printed), for a combined `python -m bench`."""
    return asyncio.run(run_async(rooms, backends, fault_runs))


def print_run(f: dict[str, Any]) -> None:
    print(f"{f['backend']:>10} · {f['mode']:<10} {f['delivered']}/{f['rooms']} rooms in "
          f"{f['seconds']:.1f} s (limits allow {f['allowed_seconds']:.1f} s): ratio "
          f"{f['ratio']:.3f} [{'OK' if f['ok'] else 'MISSED'}: target ≤ {f['target']}]; "
          f"lost {f['lost']}, sent twice {f['duplicates']} (+{f['ambiguous_duplicates']} "
          f"after a stall the client gave up on); {f['calls']} calls, "
          f"{f['injected_faults']} injected faults, {f['emulator_429']} over-limit 429s, "
          f"{f['worker_retries']} retries", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    results = run(args.rooms, backends)
    return 0 if all(r["ok"] for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
