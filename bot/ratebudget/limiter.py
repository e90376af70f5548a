"""Handlers' calls through the send budget (PTB's rate-limiter hook), and the calls that
already hold a slot (the delivery worker's) let through as they are."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import warnings
from collections.abc import Callable
from collections.abc import Coroutine
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from telegram._utils.types import JSONDict
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.ratebudget.budget import Priority
from bot.ratebudget.budget import SendBudget

log = logging.getLogger("bot.ratebudget")  # the package's one logger, as operators know it

REPLY_RETRIES = 2
REPLY_RETRY_MAX_WAIT = 10.0
# Bot API methods that are not messages yet make one or answer a person.
ANSWERS = frozenset({"answerCallbackQuery", "answerInlineQuery", "stopPoll"})


def budgeted(method: str) -> bool:
    """Whether a Bot API call takes a slot: what makes, changes or answers a message."""
    if method in ANSWERS:
        return True
    return method.startswith(("send", "copy", "forward", "edit")) and method != "sendChatAction"


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # int vs timedelta deprecation, either is fine here
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


_SLOT_TAKEN: contextvars.ContextVar[bool] = contextvars.ContextVar("slot_taken", default=False)


@contextlib.contextmanager
def slot_taken() -> Iterator[None]:
    """The calls made inside already hold a slot (the worker took it through its lane):
    the rate limiter lets them through as they are."""
    token = _SLOT_TAKEN.set(True)
    try:
        yield
    finally:
        _SLOT_TAKEN.reset(token)


class BudgetRateLimiter(BaseRateLimiter[None]):
    """PTB's rate-limiter hook over a `SendBudget`: every budgeted call of the bot takes a
    reply slot; one answered 429 is sent again after `retry_after` (package docstring)."""

    def __init__(self, budget: SendBudget, *, retries: int = REPLY_RETRIES,
                 max_wait: float = REPLY_RETRY_MAX_WAIT) -> None:
        self.budget = budget
        self.retries = retries
        self.max_wait = max_wait

    async def initialize(self) -> None:
        await self.budget.start()

    async def shutdown(self) -> None:
        await self.budget.stop()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | JSONDict | list[JSONDict]:
        if _SLOT_TAKEN.get() or not budgeted(endpoint):
            return await callback(*args, **kwargs)
        retried = 0
        while True:
            await self.budget.acquire(Priority.reply)
            started = self.budget.clock()
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                if retried >= self.retries or seconds > self.max_wait:
                    raise
                retried += 1
                log.info("%s answered 429: sent again in %.0f s (retry %d)", endpoint,
                         seconds, retried, extra={"chat_id": data.get("chat_id")})
            finally:
                self.budget.release(started)
            await asyncio.sleep(seconds)
