"""Broadcast benchmark: one notice to 1,000 duty rooms within Telegram's limits.

    .venv/bin/python -m bench.broadcast [--rooms 1000] [--backend sqlite|postgresql|both]
                                        [--mode clean|faults|replies ...]

What runs is what production runs: `services.notices.create_notice` stores the notice and
fans it out (one outbox row per room, plus the coordinator's status message) in one
transaction, and the real delivery worker (bot/delivery/, production rates) sends the
rows through PTB's HTTP stack to the Bot API emulator in its own process, which enforces
Telegram's limits (30 sends/s overall, 20/min per group, 1/s per private chat) and answers
429 with retry_after when they are exceeded.

The figure is the ratio of the wall time from the commit of the notice until the last
room's message reached the emulator, to the time the limits allow (rooms / 30 s). Three runs:
1. clean: target ratio ≤ 1.10;
2. with 10% of calls failing at random (429 with retry_after, 500, 502, dropped
   connections, 5-second stalls): target ratio ≤ 1.5;
3. replies: while the notice goes out, 20 officers look contacts up (`/contact 四川 刑侦`
   on data/sample.yaml, spread over the broadcast, through
   `Application.process_update`). Every lookup must be answered (no 429 reaching an
   officer), p99 of ask → answer at the emulator < 2 s, and the ratio still ≤ 1.10:
   replies and outbox share the bot's one send budget (bot/ratebudget/), replies first.
All check from the emulator's record that every room got its message exactly once.
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
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from telegram import Update

from bench import add_backend_option
from bench import chosen_backends
from bench import judged
from bench import percentile
from bench.common import add_duty_rooms
from bench.common import bot_harness
from bench.common import emulator_process
from bench.common import fresh_database
from bot import loop as bot_loop
from bot.emulator import BotApiEmulator
from bot.plans.notices import status_refresher
from core.enums import NoticeKind
from core.enums import OutboxState
from core.enums import Role
from core.enums import Severity
from core.notices import NoticeDraft
from core.notices import NoticePolicy
from services.notices import create_notice
from storage.dataio import import_file
from storage.db import Database
from storage.models import OutboxMessage
from storage.models import Unit
from storage.models import User
from tools.testing import BotHarness

GLOBAL_LIMIT = 30  # sends per second Telegram allows one bot
TARGET_CLEAN = 1.10
TARGET_FAULTS = 1.5
FAULT_RATE = 0.10
TARGET_REPLY_P99_S = 2.0
OFFICERS = 20
ASKS = 1  # lookups per officer
LOOKUP = "/contact 四川 刑侦"
ANSWER = "四川省公安厅 · 刑侦"  # in the lookup's answer (not in an error message)
FIRST_OFFICER = 9100001
MODES = ("clean", "faults", "replies")
FAULT_KINDS = ("429", "500", "502", "drop", "timeout")
STALL_SECONDS = 5.0
FIRST_CHAT = -1003000000000
COORDINATOR = 9000001


def _emulator_process(conn: Any, rooms: int, faults: bool, stall_seconds: float) -> None:
    """The emulator in its own process (Telegram is not in the bot's process either):
    serves until told to stop, then sends back (chat, ok, time, fault, status) per
    sendMessage, how many calls of any kind it answered 429 for being over a limit, and
    (chat, time) of each lookup answer it accepted."""

    async def serve() -> None:
        emulator = BotApiEmulator()
        await emulator.start()
        emulator.add_user(COORDINATOR, "协调员")
        for i in range(rooms):
            emulator.add_group(FIRST_CHAT - i, f"值班室{i:05d}")
        emulator.enforce_limits(global_per_second=GLOBAL_LIMIT)
        if faults:
            emulator.faults.stall_seconds = stall_seconds
            emulator.faults.random(FAULT_RATE, FAULT_KINDS, seed=7,
                                   methods=("sendMessage",))
        conn.send((emulator.base_url, emulator.base_file_url))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        sends = [c for c in emulator.calls if c.method == "sendMessage"]
        conn.send(([(c.chat_id, c.ok, c.time, c.fault, c.status) for c in sends],
                   emulator.stats["over_limit"],
                   [(c.chat_id, c.time) for c in sends
                    if c.ok and ANSWER in c.params.get("text", "")]))
        await emulator.stop()

    asyncio.run(serve())


async def seed(harness: BotHarness, rooms: int) -> tuple[User, list[int]]:
    """`rooms` units with a duty room each, and the coordinator who sends the notice;
    returns the coordinator and the units."""
    async with harness.db.session() as session:
        units = await add_duty_rooms(session, rooms, code="n", name="通报单位", short_name="通报",
                                     first_chat=FIRST_CHAT)
        coordinator = User(telegram_id=COORDINATOR, full_name="协调员", role=Role.coordinator)
        session.add(coordinator)
    return coordinator, [u.id for u in units]


async def seed_officers(harness: BotHarness) -> list[int]:
    """The sample directory, and officers of 四川 who look it up."""
    report = await import_file(harness.db, "data/sample.yaml")
    assert not report.problems, report.problems
    officers = [FIRST_OFFICER + i for i in range(OFFICERS)]
    async with harness.db.session() as session:
        sichuan = await session.scalar(select(Unit).where(Unit.short_name == "四川"))
        assert sichuan is not None
        session.add_all([User(telegram_id=o, full_name=f"警官{i}", role=Role.officer,
                              unit_id=sichuan.id, language="zh-Hans")
                         for i, o in enumerate(officers)])
    return officers


async def ask_during(harness: BotHarness, officers: list[int], start: float,
                     spread: float) -> list[tuple[int, float]]:
    """Each officer's lookups, spread evenly over `spread` seconds from `start` (wall
    clock), a lookup at a time per officer (as people type); (officer, asked at) each."""
    if not officers:
        return []
    factory = BotApiEmulator()  # not started: it only writes the updates
    for officer in officers:
        factory.add_user(officer, f"警官{officer % 100}")
    turns = [(officer, n) for n in range(ASKS) for officer in officers]
    gap = spread / len(turns)
    asked: list[tuple[int, float]] = []

    async def ask(officer: int, at: float) -> None:
        await asyncio.sleep(max(at - time.time(), 0.0))
        update = factory.make_message_update(officer, officer, LOOKUP)
        asked.append((officer, time.time()))
        await harness.application.process_update(
            Update.de_json(update, harness.application.bot))

    await asyncio.gather(*(ask(officer, start + i * gap)
                           for i, (officer, _) in enumerate(turns)))
    return sorted(asked, key=lambda pair: pair[1])


async def rooms_settled(db: Database) -> int:
    """Rooms whose notice row is done with: sent, or given up on (a loss the figures count)."""
    async with db.session() as session:
        return (await session.execute(
            select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.kind == "notice",
                OutboxMessage.state.in_((OutboxState.sent, OutboxState.failed))))).scalar_one()


async def one_run(database_url: str, *, rooms: int, mode: str, stall_seconds: float = STALL_SECONDS,
                  status_edit_seconds: float = 3.0) -> dict[str, Any]:
    """One broadcast; the smoke test shortens the stalls and the status message's pace
    (production's: 5 s, 3 s), which only change how long the run waits."""
    faults = mode == "faults"
    loop = asyncio.get_running_loop()
    async with emulator_process(_emulator_process, rooms, faults, stall_seconds) as emulated:
        harness = bot_harness(emulated, database_url, delivery_rate=GLOBAL_LIMIT,
                              notice_status_edit_seconds=status_edit_seconds)
        svc = harness.services
        coordinator, units = await seed(harness, rooms)
        officers = await seed_officers(harness) if mode == "replies" else []
        asked: list[tuple[int, float]] = []
        async with harness:
            worker = svc.delivery
            assert worker is not None
            worker.start()
            draft = NoticeDraft(kind=NoticeKind.work, severity=Severity.important,
                                text="基准通报：请各值班室确认收到。", audience={"units": units})
            async with svc.db.session() as session:
                coordinator = await session.merge(coordinator)
                await create_notice(session, draft, actor=coordinator, now=svc.now(),
                                    policy=NoticePolicy.from_settings(svc.settings))
            committed = time.time()
            worker.wake()
            allowed = rooms / GLOBAL_LIMIT
            # Over most of the broadcast; an officer's lookups at least 1.5 s apart (Telegram
            # takes one message a second in a private chat: faster typists wait).
            lookups = asyncio.create_task(ask_during(
                harness, officers, committed + min(2.0, allowed / 4),
                max(0.8 * allowed, 1.5 * ASKS)))
            # Generous: every room sent once at the limit, plus retries and pauses.
            deadline = committed + 3 * rooms / GLOBAL_LIMIT + 60
            while time.time() < deadline and await rooms_settled(svc.db) < rooms:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            asked = await lookups
            await worker.stop()
            await status_refresher(svc).settle()  # its last round, before the database goes
            counters = worker.counters
        emulated.pipe.send("stop")
        calls, over_limit, answers = await loop.run_in_executor(None, emulated.pipe.recv)
    result = figures(calls, rooms=rooms, committed=committed, faults=faults,
                     retried=counters.retried, rate_limited=counters.rate_limited,
                     failed=counters.failed, over_limit=over_limit)
    if mode == "replies":
        result.update(reply_figures(calls, answers, asked))
        result["mode"] = "replies"
        result["ok"] = result["ok"] and result["replies_ok"]
    return result


def figures(calls: list[tuple[int, bool, float, str | None, int]], *, rooms: int,
            committed: float, faults: bool, retried: int, rate_limited: int,
            failed: int, over_limit: int) -> dict[str, Any]:
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
        "emulator_429": over_limit,
        "injected_faults": sum(1 for call in calls if call[3] is not None),
        "worker_retries": retried,
        "worker_rate_limited": rate_limited,
        "worker_failed": failed,
    }


def reply_figures(calls: list[tuple[int | None, bool, float, str | None, int]],
                  answers: list[tuple[int, float]],
                  asked: list[tuple[int, float]]) -> dict[str, Any]:
    """Each lookup's answer (an officer's n-th accepted answer answers their n-th
    lookup; an error message is no answer): how many were answered, ask → answer
    latencies, and the 429s sendMessage calls to officers got."""
    answered_at: dict[int, list[float]] = collections.defaultdict(list)
    for chat_id, at in sorted(answers, key=lambda answer: answer[1]):
        answered_at[chat_id].append(at)
    officers = range(FIRST_OFFICER, FIRST_OFFICER + OFFICERS)
    refused = sum(1 for chat_id, _, _, _, status in calls
                  if chat_id in officers and status == 429)
    latencies: list[float] = []
    turn: collections.Counter[int] = collections.Counter()
    for officer, at in asked:
        if turn[officer] < len(answered_at[officer]):
            latencies.append(answered_at[officer][turn[officer]] - at)
        turn[officer] += 1
    p99 = percentile(latencies, 0.99)
    answered = len(latencies)
    return {
        "replies_asked": len(asked),
        "replies_answered": answered,
        "replies_429": refused,
        "reply_p50_s": round(percentile(latencies, 0.50), 3),
        "reply_p99_s": round(p99, 3),
        "reply_max_s": round(max(latencies, default=math.nan), 3),
        "reply_target_p99_s": TARGET_REPLY_P99_S,
        "replies_ok": answered == len(asked) > 0 and p99 < TARGET_REPLY_P99_S,
    }


async def run_async(rooms: int = 1000, backends: tuple[str, ...] = ("sqlite",),
                    modes: tuple[str, ...] = ("clean", "faults"),
                    **pace: float) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for mode in modes:
                async with fresh_database(backend, Path(tmp)) as url:
                    result = await one_run(url, rooms=rooms, mode=mode, **pace)
                result["backend"] = backend
                results["runs"].append(result)
                print_run(result)
    return results


def run(rooms: int = 1000, backends: tuple[str, ...] = ("sqlite",),
        modes: tuple[str, ...] = ("clean", "faults")) -> dict[str, Any]:
    """The figures as a dict (also printed), for a combined `python -m bench`."""
    return bot_loop.run(run_async(rooms, backends, modes))


def print_run(f: dict[str, Any]) -> None:
    target = f"target ≤ {f['target']}"
    print(f"{f['backend']:>10} · {f['mode']:<10} {f['delivered']}/{f['rooms']} rooms in "
          f"{f['seconds']:.1f} s (limits allow {f['allowed_seconds']:.1f} s): ratio "
          f"{f['ratio']:.3f} {judged(f['ok'], target)}; "
          f"lost {f['lost']}, sent twice {f['duplicates']} (+{f['ambiguous_duplicates']} "
          f"after a stall the client gave up on); {f['calls']} calls, "
          f"{f['injected_faults']} injected faults, {f['emulator_429']} over-limit 429s, "
          f"{f['worker_retries']} retries", flush=True)
    if "replies_asked" in f:
        print(f"{'':>10}   replies: {f['replies_answered']}/{f['replies_asked']} lookups "
              f"answered during the broadcast, {f['replies_429']} answered 429 first; ask → "
              f"answer p50 {f['reply_p50_s']:.3f} s, p99 {f['reply_p99_s']:.3f} s, max "
              f"{f['reply_max_s']:.3f} s "
              + judged(f["replies_ok"], f"all answered, p99 < {f['reply_target_p99_s']:.0f} s"),
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=1000)
    add_backend_option(parser)
    parser.add_argument("--mode", choices=MODES, action="append",
                        help="run only this mode (repeatable; default: all three)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    backends = chosen_backends(args)
    results = run(args.rooms, backends, tuple(args.mode or MODES))
    return 0 if all(r["ok"] for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
