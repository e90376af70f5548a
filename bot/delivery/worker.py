"""The delivery worker: its life (start, stop, drain), the claims of rows that can go out
now, and the leases of the rows it holds (the package docstring has the guarantees)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from bot.delivery.sending import Sending
from bot.delivery.state import Job
from bot.ratebudget.window import wait_event as _wait
from storage import outbox_claims

log = logging.getLogger("bot.delivery")  # the package's one logger, as operators know it

# A claim looks this far ahead: a chat whose window opens later is left for a later claim.
CLAIM_HORIZON = 0.5
# After a wake, the worker waits this long (seconds) before claiming.
WAKE_GATHER = 0.05


class DeliveryWorker(Sending):
    """Sends the outbox; see the package docstring for guarantees and limits.

    - `clock`: the database time (next_attempt_at, leases, sent_at); rate windows use the
      monotonic clock because they must agree with Telegram's real time.
    - `budget`: the bot's send budget (bot/ratebudget/), shared with replies; by
      default one of this worker's own at `global_rate` per second.

    Its tunables (`DeliverySettings`, all with defaults):
    - `global_rate` per second, `group_per_minute`, `private_per_second`: the windows.
    - `batch_size`: most rows per claim; `max_inflight`: most rows claimed and not yet
      sent (default two seconds' worth of `global_rate`).
    - `lease_seconds`: how long a claimed row is ours unrenewed; held rows are renewed
      every third of it, so a crashed worker's rows are sent again within one lease.
      `read_timeout`: seconds per call (PTB's default if None).
    - `max_attempts`, `backoff_base`, `backoff_cap`: retries after transient errors.
    - `poll_interval`: how often to look without a `wake()`.

    And its parts:
    - `breaker`: whether Telegram answers this worker (bot/breaker.py; one is made).
    - `on_sent`: async callables given each row once its delivery is recorded; they run
      in the recording task, so keep them short (enqueue and wake, do not send).
    - counters: `sent`, `retried`, `failed`, and `stats()` for more.
    """

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
                    due = await outbox_claims.due_count(session, self.clock())
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
                due = await outbox_claims.due_count(session, now)
                upcoming = await outbox_claims.next_due_at(session, include_leases=False)
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
            await _wait(self._wake, self.settings.poll_interval)
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
                await asyncio.sleep(min(self.settings.poll_interval * failures, 30.0))

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
            free = self.settings.inflight_limit - in_flight
            if free <= 0 or (in_flight and free < max(1, self.settings.inflight_limit // 4)):
                return 0
            now = self.clock()
            excluded = self._exclusions(mono)
            async with self.db.session() as session:
                dropped = await outbox_claims.fail_unreachable(session, now)
                rows = await outbox_claims.claim_batch(
                    session,
                    limit=min(free, self.settings.batch_size),
                    now=now,
                    lease_seconds=self.settings.lease_seconds,
                    worker_id=self.worker_id,
                    exclude_chats=excluded,
                )
                targets = await outbox_claims.targets_for(
                    session, {r.reply_to_key for r in rows if r.reply_to_key}
                )
            if dropped:
                self.counters.failed += dropped
                self.counters.by_error["chat unreachable"] += dropped
                log.info("failed %d outbox rows addressed to unreachable chats", dropped)
            deadline = mono + self.settings.lease_seconds / 2
            for row in rows:
                target = targets.get(row.reply_to_key) if row.reply_to_key else None
                job = Job(
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
            await _wait(self._beat_stop, self.settings.lease_seconds / 3)
            held = dict(self._held)
            if not held or self._beat_stop.is_set():
                continue
            try:
                async with self.db.session() as session:
                    renewed = await outbox_claims.renew_leases(
                        session, held, now=self.clock(), lease_seconds=self.settings.lease_seconds)
            except Exception:
                log.warning("could not renew the leases of %d outbox rows; they go to "
                            "another worker if this lasts %.0f s", len(held),
                            self.settings.lease_seconds, exc_info=True)
                continue
            lost = [row for row in held if row not in renewed and row in self._held]
            if lost:
                log.warning("outbox rows %s were taken by another worker after their lease "
                            "ran out while this one still held them: they may be sent twice",
                            lost)
