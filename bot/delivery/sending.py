"""One row's call to Telegram within its windows, and what the answer means for the row:
sent, retried (backoff, flood control), failed, its chat unreachable or migrated."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from datetime import timedelta
from typing import Any

from telegram.error import BadRequest
from telegram.error import ChatMigrated
from telegram.error import Forbidden
from telegram.error import InvalidToken
from telegram.error import NetworkError
from telegram.error import RetryAfter
from telegram.error import TelegramError

from bot.bot_api import quiet_typed_method_advice
from bot.breaker import heard
from bot.delivery.reachability import Reachability
from bot.delivery.recording import Recording
from bot.delivery.state import Job
from bot.delivery.state import Outcome
from bot.ratebudget.budget import OutboxLane
from bot.ratebudget.limiter import retry_after_seconds
from bot.ratebudget.limiter import slot_taken
from bot.ratebudget.window import SlidingWindow

log = logging.getLogger("bot.delivery")  # the package's one logger, as operators know it

# Several chats flood-limited within this many seconds mean the bot as a whole is limited.
GLOBAL_FLOOD_WINDOW = 1.0
GLOBAL_FLOOD_CHATS = 3
# A paused chat reopens this much after its row is due again.
PAUSE_SLACK = 0.02

quiet_typed_method_advice()


class Sending(Reachability, Recording):
    """Sends a claimed row and turns Telegram's answer into its outcome."""

    async def _deliver(self, job: Job) -> None:
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

    def _params(self, job: Job) -> dict[str, Any]:
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
    def _is_send(job: Job) -> bool:
        """A new message (reply_to_key makes it a reply), not an action on an old one."""
        return job.method.startswith("send") or job.method in ("copyMessage", "forwardMessage")

    def _release(self, job: Job, when: datetime | None = None) -> Outcome:
        self.counters.released += 1
        return Outcome(job, "retry", next_attempt_at=when or self.clock(),
                        error=None, count_attempt=False)

    async def _attempt(self, job: Job) -> Outcome:
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
            if self.settings.read_timeout is not None:
                kwargs["read_timeout"] = self.settings.read_timeout
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

    async def _failure(self, job: Job, exc: TelegramError) -> Outcome:
        reached = heard(exc)
        if reached:
            self.breaker.answered()
        if isinstance(exc, RetryAfter):
            return self._flood(job, retry_after_seconds(exc), str(exc))
        if isinstance(exc, ChatMigrated):
            log.info("chat %s migrated to %s", job.chat_id, exc.new_chat_id,
                     extra={"outbox_id": job.id, "chat_id": job.chat_id})
            self.counters.retried += 1
            return Outcome(job, "migrated", new_chat_id=exc.new_chat_id, count_attempt=False,
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

    def _give_back(self, job: Job, window: SlidingWindow | OutboxLane) -> Outcome:
        """A row that found no slot in time: due again when its window has room, or at once
        (for another worker) if this one is cut off from Telegram."""
        return self._release(job, None if self.breaker.is_open else self._resume_time(window))

    def _resume_time(self, window: SlidingWindow | OutboxLane) -> datetime:
        mono = time.monotonic()
        wait = max(0.0, window.available_at(mono) - mono)
        return self.clock() + timedelta(seconds=min(wait, self.settings.lease_seconds))

    def _sent(self, job: Job, message_id: int | None) -> Outcome:
        self.counters.sent += 1
        return Outcome(job, "sent", message_id=message_id)

    def _failed(self, job: Job, error: str) -> Outcome:
        self.counters.failed += 1
        self.counters.by_error[error.split(":", 1)[0]] += 1
        log.info("outbox row %s (%s) to chat %s failed: %s", job.id, job.method, job.chat_id,
                 error, extra={"outbox_id": job.id, "chat_id": job.chat_id})
        return Outcome(job, "failed", error=error)

    def _unreachable(self, job: Job, reason: str) -> Outcome:
        self.counters.failed += 1
        self.counters.by_error["chat unreachable"] += 1
        log.info("chat %s is unreachable (%s); outbox row %s failed", job.chat_id, reason,
                 job.id, extra={"outbox_id": job.id, "chat_id": job.chat_id})
        return Outcome(job, "unreachable", error=reason)

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number `attempt`: exponential, capped, half of it jitter."""
        settings = self.settings
        delay = min(settings.backoff_cap, settings.backoff_base * 2 ** max(attempt - 1, 0))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    def _transient(self, job: Job, error: str) -> Outcome:
        kind = error.split(":", 1)[0]
        if job.attempt >= self.settings.max_attempts:
            return self._failed(job, f"gave up after {job.attempt} attempts: {error}")
        self.counters.retried += 1
        self.counters.by_error[kind] += 1
        delay = self.backoff(job.attempt)
        log.info("outbox row %s to chat %s: %s; retry %d in %.1fs", job.id, job.chat_id,
                 kind, job.attempt + 1, delay, extra={"outbox_id": job.id, "chat_id": job.chat_id})
        return Outcome(job, "retry", error=error,
                        next_attempt_at=self.clock() + timedelta(seconds=delay))

    def _flood(self, job: Job, seconds: float, error: str) -> Outcome:
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
        return Outcome(job, "retry", error=error, count_attempt=False,
                        next_attempt_at=self.clock() + timedelta(seconds=seconds))
