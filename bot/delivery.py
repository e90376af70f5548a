"""The delivery worker: drains the outbox through PTB's HTTP stack within Telegram's limits.

Life of a row: claimed in a short transaction (`storage.outbox.claim_batch`, leased),
sent with no transaction open (`Bot.do_api_request`, so PTB's request stack and the
configured base_url are used), and the outcome recorded in another short transaction
(several outcomes share one). A chat has at most one row in flight, so its messages go
out in order.

Rate limits are sliding windows ("at most N sends in any W seconds"): 20 per minute per
group (negative chat id), 1 per second per private chat, and the bot's send budget
(bot/ratebudget.py: DELIVERY_RATE a second for the whole bot, shared with handlers'
replies, which go first, and on PostgreSQL with the other processes). A send occupies a
slot from the moment it starts until W seconds after its response arrived; since
Telegram saw the request somewhere between those two instants, Telegram never counts
more than N in a window, whatever the network latency (`arrival_allowance` trades some
of that certainty for throughput on slow links). Rows are only claimed for chats whose
window has room, and only as many as can go out in about two seconds, so a claimed row
never waits long enough for its lease to expire.

Errors:
- `RetryAfter`: the chat is paused for retry_after and the row rescheduled without
  counting an attempt; when several chats are told so within a second, every send pauses.
- `TimedOut`, `NetworkError`, 5xx: exponential backoff with jitter (capped), failed after
  `max_attempts` with the error recorded (unless the breaker opens: see "Cut off").
- `Forbidden` (blocked, kicked) and `BadRequest` "chat not found": the row fails and the
  chat is marked unreachable; later rows to it fail without a call.
- `ChatMigrated`: the new chat id is recorded and the row retried there at once.
- Other `BadRequest`: failed, no retry; "message is not modified" on an edit counts as sent.

Leases: a claimed row is leased for `lease_seconds` (DELIVERY_LEASE_SECONDS, 15 by
default), and while the worker holds it (sending, waiting for a window, recording) a
heartbeat renews the lease every third of that: a slow but live worker keeps its rows,
and a dead one's rows are claimed again by another worker within one lease of its death.

Cut off: a worker whose sends get no answer at all (refused, dropped, timed out; not an
error Telegram answered) three times in a row asks getMe; if that fails too, its circuit
breaker opens (bot/breaker.py): it stops claiming and gives back the rows it holds,
without counting an attempt, so healthy workers send them and no row is failed because
this one was cut off. It asks getMe again on a capped backoff and claims again once
answered. A row that would be failed after `max_attempts` for want of an answer is
failed only once getMe has answered.

Duplicates: delivery is at-least-once. A `TimedOut` is ambiguous (Telegram may have
delivered before the response was lost) and is retried; so is a row whose worker died
mid-send (after its lease expires). Both are bounded by the rows in flight (one per chat,
at most `max_inflight` per worker); no other path sends a row twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot.bot_api import quiet_typed_method_advice
from bot.breaker import CircuitBreaker, heard
from bot.ratebudget import OutboxLane, SendBudget, SlidingWindow, retry_after_seconds, slot_taken
from bot.ratebudget import wait_event as _wait
from core.enums import OutboxState
from storage import outbox
from storage.db import Database
from storage.models import OutboxMessage, utcnow

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
SentHook = Callable[[OutboxMessage], Awaitable[None]]

# A claim looks this far ahead: a chat whose window opens later is left for a later claim.
CLAIM_HORIZON = 0.5
# After a wake, the worker waits this long (seconds) before claiming.
WAKE_GATHER = 0.05
# Several chats flood-limited within this many seconds mean the bot as a whole is limited.
GLOBAL_FLOOD_WINDOW = 1.0
GLOBAL_FLOOD_CHATS = 3
# A paused chat reopens this much after its row is due again.
PAUSE_SLACK = 0.02
# How long getMe may take to say Telegram answers (seconds), unless read_timeout is set.
PROBE_TIMEOUT = 5.0



quiet_typed_method_advice()


@dataclass
class _Job:
    id: int
    dedup_key: str
    chat_id: int
    method: str
    payload: dict[str, Any]
    attempt: int
    reply_to_key: str | None
    target_state: OutboxState | None
    target_message_id: int | None
    deadline: float  # monotonic: give the row back if it cannot start by then


@dataclass
class _Outcome:
    job: _Job
    kind: str  # sent | retry | failed | unreachable | migrated
    message_id: int | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    count_attempt: bool = True
    new_chat_id: int | None = None


@dataclass
class DeliveryCounters:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    rate_limited: int = 0  # RetryAfter answers (also counted in retried)
    released: int = 0  # claimed but given back unsent (stop, flood pause)
    by_error: collections.Counter[str] = field(default_factory=collections.Counter)


class DeliveryWorker:
    """Sends the outbox; see the module docstring for guarantees and limits.

    - `clock`: the database time (next_attempt_at, leases, sent_at); rate windows use the
      monotonic clock because they must agree with Telegram's real time.
    - `budget`: the bot's send budget (bot/ratebudget.py), shared with replies; by
      default one of this worker's own at `global_rate` per second.
    - `global_rate` per second, `group_per_minute`, `private_per_second`: the windows.
    - `batch_size`: most rows per claim; `max_inflight`: most rows claimed and not yet
      sent (default two seconds' worth of `global_rate`).
    - `lease_seconds`: how long a claimed row is ours unrenewed; held rows are renewed
      every third of it, so a crashed worker's rows are sent again within one lease.
      `read_timeout`: seconds per call (PTB's default if None).
    - `max_attempts`, `backoff_base`, `backoff_cap`: retries after transient errors.
    - `breaker`: whether Telegram answers this worker (bot/breaker.py; one is made).
    - `poll_interval`: how often to look without a `wake()`.
    - `on_sent`: async callables given each row once its delivery is recorded; they run
      in the recording task, so keep them short (enqueue and wake, do not send).
    - counters: `sent`, `retried`, `failed`, and `stats()` for more.
    """

    def __init__(
        self,
        db: Database,
        bot: Bot,
        *,
        clock: Clock = utcnow,
        global_rate: int = 30,
        group_per_minute: int = 20,
        private_per_second: int = 1,
        batch_size: int = 100,
        max_inflight: int | None = None,
        lease_seconds: float = 15.0,
        max_attempts: int = 10,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        poll_interval: float = 1.0,
        read_timeout: float | None = None,
        arrival_allowance: float | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        breaker: CircuitBreaker | None = None,
        budget: SendBudget | None = None,
    ) -> None:
        self.db = db
        self.bot = bot
        self.clock = clock
        self.group_per_minute = group_per_minute
        self.private_per_second = private_per_second
        self.batch_size = batch_size
        # Enough to keep the global window busy for about two seconds, no more: claimed
        # rows must go out well within their lease.
        self.max_inflight = max_inflight or max(2 * global_rate, 4)
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.poll_interval = poll_interval
        self.read_timeout = read_timeout
        self.arrival_allowance = arrival_allowance
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.rng = rng or random.Random()
        self.counters = DeliveryCounters()
        self.breaker = breaker or CircuitBreaker(self.worker_id)
        self.on_sent: list[SentHook] = []
        quiet_typed_method_advice()  # again here: test runners reset warning filters

        self._global = (budget or SendBudget(global_rate, arrival_allowance=arrival_allowance)
                        ).outbox_lane()
        self._windows: dict[int, SlidingWindow] = {}
        self._floods: collections.deque[tuple[float, int]] = collections.deque()
        self._busy: collections.Counter[int] = collections.Counter()  # chat -> unrecorded rows
        self._held: dict[int, int] = {}  # claimed, unrecorded rows: id -> attempt (the fence)
        self._heartbeat: asyncio.Task[None] | None = None
        self._beat_stop = asyncio.Event()
        self._probing: asyncio.Task[bool] | None = None
        self._calling: set[asyncio.Task[Any]] = set()  # `_deliver`s awaiting an answer
        self._abandoning: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[_Outcome] = []
        self._flusher: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self._wake = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False

    # ------------------------------------------------------------------- public

    @property
    def sent(self) -> int:
        return self.counters.sent

    @property
    def retried(self) -> int:
        return self.counters.retried

    @property
    def failed(self) -> int:
        return self.counters.failed

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    def start(self) -> None:
        """Run in the background until `stop()`; polls every `poll_interval`, or on `wake()`."""
        if self.running:
            return
        self._stopping = False
        self._reopen()
        self._wake.set()
        self._runner = asyncio.create_task(self._run(), name=f"delivery:{self.worker_id}")

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Stop claiming; let calls under way finish (up to `timeout`); give back the rest.

        Rows not started yet go back to `pending` at once; a call still under way after
        `timeout` is cancelled and its row is retried after its lease (at-least-once), and
        so are rows whose outcome the database did not take within another `timeout`.
        """
        self._stopping = True
        self._wake.set()
        if self._runner is not None:
            await self._runner
            self._runner = None
        self._global.close()
        for window in self._windows.values():
            window.close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._flusher is not None and not (await asyncio.wait({self._flusher},
                                                                timeout=timeout))[0]:
            # The database does not answer: stopping must not wait for it. The rows stay
            # leased, and are sent again after their lease (at-least-once, as above).
            log.warning("delivery: %d outcomes could not be recorded within %g s (the "
                        "database does not answer); their rows are sent again after their "
                        "lease", len(self._outcomes), timeout)
            self._flusher.cancel()
            await asyncio.wait({self._flusher})
        if self._heartbeat is not None:
            self._beat_stop.set()
            await self._heartbeat
            self._beat_stop.clear()
        self._reopen()
        self._stopping = False

    def wake(self) -> None:
        """Look at the outbox now (call after committing rows)."""
        self._wake.set()

    async def drain(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Deliver until nothing is due or in flight; TimeoutError if that takes too long.

        Rows waiting to be retried (backoff, flood control) before the deadline are waited
        for, unless the clock is stopped (a fake clock: advance it and drain again); rows
        scheduled later (`not_before`, a long backoff) and rows leased by another worker
        are not. Works whether or not the background task runs (cut off from Telegram,
        it asks getMe as the background task would).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if loop.time() > deadline:
                async with self.db.session() as session:
                    due = await outbox.due_count(session, self.clock())
                raise TimeoutError(
                    f"outbox not drained after {timeout}s: {due} due, {len(self._tasks)} in flight"
                )
            if self.breaker.is_open and not self.running:
                await self._wait_for_telegram()
                continue
            claimed = await self._cycle()
            if self._busy:
                self._progress.clear()
                await _wait(self._progress, 0.1)
                continue
            if claimed:
                continue
            now = self.clock()
            async with self.db.session() as session:
                due = await outbox.due_count(session, now)
                upcoming = await outbox.next_due_at(session, include_leases=False)
            horizon = now + timedelta(seconds=max(deadline - loop.time(), 0.0))
            if not due and (upcoming is None or upcoming > horizon):
                return
            await asyncio.sleep(0.02)
            if not due and self.clock() == now:
                return  # a stopped (fake) clock: waiting will not make anything due

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            "sent": c.sent,
            "retried": c.retried,
            "failed": c.failed,
            "rate_limited": c.rate_limited,
            "released": c.released,
            "in_flight": sum(self._busy.values()),
            "reachable": not self.breaker.is_open,
            "errors": dict(c.by_error),
        }

    # ------------------------------------------------------------------- claiming

    def _reopen(self) -> None:
        self._global.reopen()
        for window in self._windows.values():
            window.reopen()

    def _close_windows(self) -> None:
        """Sends waiting for a slot give up (their rows go back to the outbox)."""
        self._global.close()
        for window in self._windows.values():
            window.close()

    def _window(self, chat_id: int) -> SlidingWindow:
        window = self._windows.get(chat_id)
        if window is None:
            if chat_id < 0:
                window = SlidingWindow(self.group_per_minute, 60.0,
                                       arrival_allowance=self.arrival_allowance)
            else:
                window = SlidingWindow(self.private_per_second, 1.0,
                                       arrival_allowance=self.arrival_allowance)
            self._windows[chat_id] = window
        return window

    def _exclusions(self, now: float) -> set[int]:
        """Chats not to claim for: busy here, paused, or with a full window."""
        excluded = set(self._busy)
        for chat_id, window in list(self._windows.items()):
            # A paused chat stays excluded until the pause is over, so the row that was
            # told to wait (due when the pause ends) keeps its place before later rows.
            if window.blocked_until > now or window.available_at(now) > now + CLAIM_HORIZON:
                excluded.add(chat_id)
            elif chat_id not in self._busy and window.idle(now):
                del self._windows[chat_id]
        return excluded

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            if self.breaker.is_open:
                await self._wait_for_telegram()
                continue
            await _wait(self._wake, self.poll_interval)
            if self._wake.is_set():
                # Let the wakes of a burst (one per committed job) gather into one claim.
                await asyncio.sleep(WAKE_GATHER)
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self._cycle()
                failures = 0
            except Exception:
                failures += 1
                log.exception("outbox claim failed (%d in a row)", failures)
                await asyncio.sleep(min(self.poll_interval * failures, 30.0))

    async def _cycle(self) -> int:
        """Claim what can go out now and start sending it; returns how many were claimed."""
        async with self._cycle_lock:
            if self._stopping or not self.breaker.allows_claims:
                return 0
            mono = time.monotonic()
            if self._global.blocked_until > mono:
                return 0
            # Rows sent but not yet recorded keep their chat busy but take no capacity.
            in_flight = len(self._tasks)
            free = self.max_inflight - in_flight
            if free <= 0 or (in_flight and free < max(1, self.max_inflight // 4)):
                return 0
            now = self.clock()
            excluded = self._exclusions(mono)
            async with self.db.session() as session:
                dropped = await outbox.fail_unreachable(session, now)
                rows = await outbox.claim_batch(
                    session,
                    limit=min(free, self.batch_size),
                    now=now,
                    lease_seconds=self.lease_seconds,
                    worker_id=self.worker_id,
                    exclude_chats=excluded,
                )
                targets = await outbox.targets_for(
                    session, {r.reply_to_key for r in rows if r.reply_to_key}
                )
            if dropped:
                self.counters.failed += dropped
                self.counters.by_error["chat unreachable"] += dropped
                log.info("failed %d outbox rows addressed to unreachable chats", dropped)
            deadline = mono + self.lease_seconds / 2
            for row in rows:
                target = targets.get(row.reply_to_key) if row.reply_to_key else None
                job = _Job(
                    id=row.id,
                    dedup_key=row.dedup_key,
                    chat_id=row.chat_id,
                    method=row.method,
                    payload=dict(row.payload or {}),
                    attempt=row.attempts,
                    reply_to_key=row.reply_to_key,
                    target_state=target[0] if target else None,
                    target_message_id=target[1] if target else None,
                    deadline=deadline,
                )
                self._busy[job.chat_id] += 1
                self._held[job.id] = job.attempt
                task = asyncio.create_task(self._deliver(job), name=f"outbox:{job.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if rows:
                log.debug("worker %s claimed %d outbox rows", self.worker_id, len(rows))
                if self._heartbeat is None or self._heartbeat.done():
                    self._heartbeat = asyncio.create_task(self._keep_leases(),
                                                          name="outbox:heartbeat")
            return len(rows)

    async def _keep_leases(self) -> None:
        """While rows are held, renew their leases every third of a lease.

        A row whose lease ran out and that another worker claimed is not renewed (its
        attempt no longer matches), nor one whose outcome is being recorded.
        """
        while self._held and not self._beat_stop.is_set():
            await _wait(self._beat_stop, self.lease_seconds / 3)
            held = dict(self._held)
            if not held or self._beat_stop.is_set():
                continue
            try:
                async with self.db.session() as session:
                    renewed = await outbox.renew_leases(session, held, now=self.clock(),
                                                        lease_seconds=self.lease_seconds)
            except Exception:
                log.warning("could not renew the leases of %d outbox rows; they go to "
                            "another worker if this lasts %.0f s", len(held),
                            self.lease_seconds, exc_info=True)
                continue
            lost = [row for row in held if row not in renewed and row in self._held]
            if lost:
                log.warning("outbox rows %s were taken by another worker after their lease "
                            "ran out while this one still held them: they may be sent twice",
                            lost)

    # ------------------------------------------------------------------- sending

    async def _deliver(self, job: _Job) -> None:
        try:
            outcome = await self._attempt(job)
        except asyncio.CancelledError:
            # Stopped mid-call: the row stays `sending` and is retried after its lease.
            self._finish(job)
            raise
        except Exception as exc:  # a bug or an unexpected library error: retry later
            log.exception("unexpected error sending outbox row %s", job.id,
                          extra={"outbox_id": job.id, "chat_id": job.chat_id})
            outcome = self._transient(job, f"{type(exc).__name__}: {exc}")
        self._outcomes.append(outcome)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="outbox:record")

    def _finish(self, job: _Job) -> None:
        self._held.pop(job.id, None)
        self._busy[job.chat_id] -= 1
        if self._busy[job.chat_id] <= 0:
            del self._busy[job.chat_id]

    def _params(self, job: _Job) -> dict[str, Any]:
        params = dict(job.payload)
        params["chat_id"] = job.chat_id
        if job.reply_to_key and job.target_message_id is not None:
            if self._is_send(job):
                params.setdefault(
                    "reply_parameters",
                    {"message_id": job.target_message_id, "allow_sending_without_reply": True},
                )
            else:
                params["message_id"] = job.target_message_id
        return params

    @staticmethod
    def _is_send(job: _Job) -> bool:
        """A new message (reply_to_key makes it a reply), not an action on an old one."""
        return job.method.startswith("send") or job.method in ("copyMessage", "forwardMessage")

    def _release(self, job: _Job, when: datetime | None = None) -> _Outcome:
        self.counters.released += 1
        return _Outcome(job, "retry", next_attempt_at=when or self.clock(),
                        error=None, count_attempt=False)

    async def _attempt(self, job: _Job) -> _Outcome:
        if job.reply_to_key and job.target_message_id is None and not self._is_send(job):
            return self._failed(job, f"the message {job.reply_to_key!r} was never sent")
        window = self._window(job.chat_id)
        if not await window.acquire(job.deadline):
            return self._give_back(job, window)
        try:
            if not await self._global.acquire(job.deadline):
                window.cancel()
                return self._give_back(job, self._global)
        except BaseException:
            window.cancel()
            raise
        if self.breaker.is_open:  # it opened while this row waited for its slots
            self._global.cancel()
            window.cancel()
            return self._release(job)
        started = time.monotonic()
        error: TelegramError | None = None
        task = asyncio.current_task()  # `_deliver`'s, which `_abandon_calls` may cancel
        assert task is not None
        self._calling.add(task)
        try:
            kwargs: dict[str, Any] = {}
            if self.read_timeout is not None:
                kwargs["read_timeout"] = self.read_timeout
            with slot_taken():  # through the lane above, not the bot's rate limiter
                result = await self.bot.do_api_request(
                    job.method, api_kwargs=self._params(job), **kwargs
                )
        except TelegramError as exc:
            error = exc
        except asyncio.CancelledError:
            if not self._abandoned(task):
                raise
            return self._release(job)
        finally:
            self._calling.discard(task)
            self._global.release(started)
            window.release(started)
        if error is not None:
            return await self._failure(job, error)
        self.breaker.answered()
        message_id = result.get("message_id") if isinstance(result, dict) else None
        return self._sent(job, message_id if message_id is not None else job.target_message_id)

    async def _failure(self, job: _Job, exc: TelegramError) -> _Outcome:
        reached = heard(exc)
        if reached:
            self.breaker.answered()
        if isinstance(exc, RetryAfter):
            return self._flood(job, retry_after_seconds(exc), str(exc))
        if isinstance(exc, ChatMigrated):
            log.info("chat %s migrated to %s", job.chat_id, exc.new_chat_id,
                     extra={"outbox_id": job.id, "chat_id": job.chat_id})
            self.counters.retried += 1
            return _Outcome(job, "migrated", new_chat_id=exc.new_chat_id, count_attempt=False,
                            error=str(exc))
        if isinstance(exc, Forbidden):
            return self._unreachable(job, exc.message)
        if isinstance(exc, BadRequest):
            text = exc.message.lower()
            if "message is not modified" in text:
                return self._sent(job, job.target_message_id)
            if "chat not found" in text:
                return self._unreachable(job, exc.message)
            return self._failed(job, f"BadRequest: {exc.message}")
        error = f"{type(exc).__name__}: {exc.message}"
        if isinstance(exc, InvalidToken):
            log.error("the bot token was rejected; outbox row %s will be retried", job.id)
            return self._transient(job, error)
        if not isinstance(exc, NetworkError):
            return self._failed(job, error)
        # TimedOut is ambiguous: Telegram may have delivered. Retrying is the one source of
        # duplicates. No answer at all may mean this worker is cut off, not the chat.
        if reached is False and await self._cut_off(job, error):
            return self._release(job)
        return self._transient(job, error)

    def _give_back(self, job: _Job, window: SlidingWindow | OutboxLane) -> _Outcome:
        """A row that found no slot in time: due again when its window has room, or at once
        (for another worker) if this one is cut off from Telegram."""
        return self._release(job, None if self.breaker.is_open else self._resume_time(window))

    def _resume_time(self, window: SlidingWindow | OutboxLane) -> datetime:
        mono = time.monotonic()
        wait = max(0.0, window.available_at(mono) - mono)
        return self.clock() + timedelta(seconds=min(wait, self.lease_seconds))

    def _sent(self, job: _Job, message_id: int | None) -> _Outcome:
        self.counters.sent += 1
        return _Outcome(job, "sent", message_id=message_id)

    def _failed(self, job: _Job, error: str) -> _Outcome:
        self.counters.failed += 1
        self.counters.by_error[error.split(":", 1)[0]] += 1
        log.info("outbox row %s (%s) to chat %s failed: %s", job.id, job.method, job.chat_id,
                 error, extra={"outbox_id": job.id, "chat_id": job.chat_id})
        return _Outcome(job, "failed", error=error)

    def _unreachable(self, job: _Job, reason: str) -> _Outcome:
        self.counters.failed += 1
        self.counters.by_error["chat unreachable"] += 1
        log.info("chat %s is unreachable (%s); outbox row %s failed", job.chat_id, reason,
                 job.id, extra={"outbox_id": job.id, "chat_id": job.chat_id})
        return _Outcome(job, "unreachable", error=reason)

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number `attempt`: exponential, capped, half of it jitter."""
        delay = min(self.backoff_cap, self.backoff_base * 2 ** max(attempt - 1, 0))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    def _transient(self, job: _Job, error: str) -> _Outcome:
        kind = error.split(":", 1)[0]
        if job.attempt >= self.max_attempts:
            return self._failed(job, f"gave up after {job.attempt} attempts: {error}")
        self.counters.retried += 1
        self.counters.by_error[kind] += 1
        delay = self.backoff(job.attempt)
        log.info("outbox row %s to chat %s: %s; retry %d in %.1fs", job.id, job.chat_id,
                 kind, job.attempt + 1, delay, extra={"outbox_id": job.id, "chat_id": job.chat_id})
        return _Outcome(job, "retry", error=error,
                        next_attempt_at=self.clock() + timedelta(seconds=delay))

    def _flood(self, job: _Job, seconds: float, error: str) -> _Outcome:
        mono = time.monotonic()
        # The row is due a little before the chat reopens (see _exclusions).
        self._window(job.chat_id).block(mono + seconds + PAUSE_SLACK)
        self._floods.append((mono, job.chat_id))
        while self._floods and self._floods[0][0] < mono - GLOBAL_FLOOD_WINDOW:
            self._floods.popleft()
        if len({chat for _, chat in self._floods}) >= GLOBAL_FLOOD_CHATS:
            self._global.block(mono + seconds + PAUSE_SLACK)
            log.warning("flood control on %d chats within %.0fs: all sends paused for %.0fs",
                        len({chat for _, chat in self._floods}), GLOBAL_FLOOD_WINDOW, seconds)
        else:
            log.info("flood control: chat %s paused for %.0fs", job.chat_id, seconds,
                     extra={"outbox_id": job.id, "chat_id": job.chat_id})
        self.counters.retried += 1
        self.counters.rate_limited += 1
        self.counters.by_error["RetryAfter"] += 1
        return _Outcome(job, "retry", error=error, count_attempt=False,
                        next_attempt_at=self.clock() + timedelta(seconds=seconds))

    # ------------------------------------------------------------------- reachability

    async def _cut_off(self, job: _Job, error: str) -> bool:
        """After a send that got no answer: whether this worker is cut off from Telegram
        (the row then goes back without counting an attempt). getMe is asked when that is
        `threshold` such sends in a row, or before the row would be failed for want of an
        answer: no row fails because this worker could not reach Telegram."""
        if self.breaker.is_open:
            return True
        if self.breaker.unanswered() or job.attempt >= self.max_attempts:
            return not await self._probe(error)
        return False

    async def _probe(self, reason: str) -> bool:
        """Whether getMe is answered; one question at a time, its answer shared."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(self._ask(reason), name="outbox:probe")
        return await asyncio.shield(self._probing)

    async def _ask(self, reason: str) -> bool:
        timeout = self.read_timeout or PROBE_TIMEOUT
        try:
            # Bounded as a whole: the call may wait for a connection behind hanging sends.
            await asyncio.wait_for(self.bot.get_me(read_timeout=timeout, write_timeout=timeout,
                                                   connect_timeout=timeout,
                                                   pool_timeout=timeout), timeout)
        except (TelegramError, TimeoutError) as exc:
            answer = (f"getMe: {type(exc).__name__}: {exc.message}"
                      if isinstance(exc, TelegramError) else f"getMe: no answer in {timeout:g} s")
            if self.breaker.probe_failed(f"{reason}; {answer}" if reason else answer):
                self._close_windows()
                self._abandon_calls()
            return False
        if self.breaker.probe_succeeded() and not self._stopping:
            self._reopen()
            self._wake.set()
        return True

    def _abandon_calls(self) -> None:
        """The breaker opened: stop waiting for answers that are not coming. Those rows go
        back at once, as after a time-out (a call that did reach Telegram is sent again:
        the ambiguity every time-out has), instead of each waiting out its own."""
        for task in self._calling:
            self._abandoning.add(task)
            task.cancel()

    def _abandoned(self, task: asyncio.Task[Any]) -> bool:
        """Whether this cancellation is `_abandon_calls`' alone (not also `stop()`'s)."""
        if task not in self._abandoning:
            return False
        self._abandoning.discard(task)
        return task.uncancel() == 0

    async def _wait_for_telegram(self) -> None:
        """Cut off: claim nothing; ask getMe when the breaker says."""
        delay = self.breaker.probe_in()
        if delay > 0:
            await _wait(self._wake, delay)
            self._wake.clear()
        else:
            await self._probe("")

    # ------------------------------------------------------------------- recording

    async def _flush(self) -> None:
        failures = 0
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            for outcome in batch:  # being recorded: the heartbeat leaves them alone
                self._held.pop(outcome.job.id, None)
            try:
                sent = await self._record(batch)
            except Exception:
                failures += 1
                log.exception("could not record %d outbox outcomes (try %d)", len(batch),
                              failures)
                self._outcomes[:0] = batch
                self._held.update((o.job.id, o.job.attempt) for o in batch)
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                continue
            failures = 0
            for outcome in batch:
                self._finish(outcome.job)
            self._progress.set()
            self._wake.set()
            for row in sent:
                await self._run_hooks(row)

    async def _record(self, batch: list[_Outcome]) -> list[OutboxMessage]:
        sent: list[OutboxMessage] = []
        now = self.clock()
        async with self.db.session() as session:
            for o in batch:
                job = o.job
                if o.kind == "sent":
                    row = await outbox.mark_sent(session, job.id, o.message_id, now,
                                                 attempt=job.attempt)
                    if row is not None:
                        sent.append(row)
                elif o.kind == "retry":
                    await outbox.mark_retry(session, job.id, o.next_attempt_at or now, o.error,
                                            attempt=job.attempt, count_attempt=o.count_attempt)
                elif o.kind == "failed":
                    await outbox.mark_failed(session, job.id, o.error or "failed",
                                             attempt=job.attempt)
                elif o.kind == "unreachable":
                    await outbox.mark_failed(session, job.id, f"chat unreachable: {o.error}",
                                             attempt=job.attempt)
                    dropped = await outbox.mark_chat_unreachable(
                        session, job.chat_id, o.error or "", now=now
                    )
                    self.counters.failed += dropped
                    self.counters.by_error["chat unreachable"] += dropped
                elif o.kind == "migrated" and o.new_chat_id is not None:
                    await outbox.mark_chat_migrated(session, job.chat_id, o.new_chat_id)
                    await outbox.mark_retry(session, job.id, now, o.error, attempt=job.attempt,
                                            count_attempt=False, chat_id=o.new_chat_id)
        return sent

    async def _run_hooks(self, row: OutboxMessage) -> None:
        for hook in list(self.on_sent):
            try:
                await hook(row)
            except Exception:
                log.exception("on_sent hook failed for outbox row %s", row.id,
                              extra={"outbox_id": row.id, "chat_id": row.chat_id})
