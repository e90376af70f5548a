"""Cut off from Telegram: after sends that got no answer, ask getMe; when that fails too,
the breaker opens (bot/breaker.py), the worker stops claiming and gives its rows back."""

from __future__ import annotations

import asyncio
from typing import Any

from telegram.error import TelegramError

from bot.delivery.state import Job
from bot.delivery.state import WorkerState
from bot.ratebudget.window import wait_event as _wait

# How long getMe may take to say Telegram answers (seconds), unless read_timeout is set.
PROBE_TIMEOUT = 5.0


class Reachability(WorkerState):
    """Whether Telegram answers this worker, asked as little as possible."""

    async def _cut_off(self, job: Job, error: str) -> bool:
        """After a send that got no answer: whether this worker is cut off from Telegram
        (the row then goes back without counting an attempt). getMe is asked when that is
        `threshold` such sends in a row, or before the row would be failed for want of an
        answer: no row fails because this worker could not reach Telegram."""
        if self.breaker.is_open:
            return True
        if self.breaker.unanswered() or job.attempt >= self.settings.max_attempts:
            return not await self._probe(error)
        return False

    async def _probe(self, reason: str) -> bool:
        """Whether getMe is answered; one question at a time, its answer shared."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(self._ask(reason), name="outbox:probe")
        return await asyncio.shield(self._probing)

    async def _ask(self, reason: str) -> bool:
        timeout = self.settings.read_timeout or PROBE_TIMEOUT
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
