"""Every button press (callback query) is answered exactly once.

Telegram shows a spinner on a pressed button until the bot answers the query, accepts
one answer per query, and refuses any answer after about fifteen seconds ("query is too
old and response timeout expired or query ID is invalid"). A handler that answered and
then failed used to have the error handler answer again, and an answer that came too
late (a slow database, a copy of the update) raised in the middle of the handler: a
traceback at ERROR, and whatever the handler meant to do after its answer was not done.

So the answering is central, in the bot object every handler answers through:

* `DeskBot.answer_callback_query` answers a query once; asked again for the same query
  it does nothing (DEBUG) and returns False.
* Telegram refusing an answer as too old or invalid is expected (the user is gone or
  pressed long ago): logged at DEBUG, returned as False, and the handler carries on, so
  the press still takes effect. The same for an inline query's answer (the officer
  typed on, so Telegram moved to a newer query).
* `AnsweringApplication.process_update` answers, after the handlers, a press that no
  handler answered, so no button keeps spinning.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.error import BadRequest
from telegram.ext import Application
from telegram.ext import ExtBot

log = logging.getLogger(__name__)

KEPT = 4096  # queries remembered as answered (an update is done long before this many)
EXPIRED = ("query is too old", "query id is invalid")


def expired(error: BadRequest) -> bool:
    """Telegram's refusal of an answer that came too late or for an unknown query."""
    message = error.message.lower()
    return any(phrase in message for phrase in EXPIRED)


class DeskBot(ExtBot[Any]):
    """PTB's ExtBot, answering each callback query at most once (module docstring)."""

    __slots__ = ("_answered",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answered: OrderedDict[str, None] = OrderedDict()

    def answered(self, callback_query_id: str) -> bool:
        """Whether the query was answered (or found too old to answer) already."""
        return callback_query_id in self._answered

    def _remember(self, callback_query_id: str) -> None:
        self._answered[callback_query_id] = None
        while len(self._answered) > KEPT:
            self._answered.popitem(last=False)

    async def answer_callback_query(self, callback_query_id: str, *args: Any,
                                    **kwargs: Any) -> bool:
        if self.answered(callback_query_id):
            log.debug("callback query %s was answered already; not answering again",
                      callback_query_id)
            return False
        self._remember(callback_query_id)
        try:
            return await _unless_expired("callback query", callback_query_id, super()
                                         .answer_callback_query(callback_query_id, *args,
                                                                **kwargs))
        except BaseException:
            # Not answered (a network error, a time-out): a later answer may still work.
            self._answered.pop(callback_query_id, None)
            raise

    async def answer_inline_query(self, inline_query_id: str, *args: Any,
                                  **kwargs: Any) -> bool:
        return await _unless_expired("inline query", inline_query_id, super()
                                     .answer_inline_query(inline_query_id, *args, **kwargs))


async def _unless_expired(kind: str, query_id: str, answering: Awaitable[bool]) -> bool:
    """The answer, or False when Telegram found the query too old to answer."""
    try:
        return await answering
    except BadRequest as error:
        if not expired(error):
            raise
        log.debug("%s %s could not be answered any more (%s); the update is handled all "
                  "the same", kind, query_id, error.message)
        return False


class AnsweringApplication(Application[Any, Any, Any, Any, Any, Any]):
    """An Application that answers, after the handlers, a button press none answered."""

    async def process_update(self, update: object) -> None:
        await super().process_update(update)  # handlers' errors end in the error handler
        await answer_left_over(self.bot, update)


async def answer_left_over(bot: object, update: object) -> None:
    query = update.callback_query if isinstance(update, Update) else None
    if query is None or not isinstance(bot, DeskBot) or bot.answered(query.id):
        return
    log.debug("callback query %s was not answered by its handler: answered empty", query.id)
    try:
        await bot.answer_callback_query(query.id)
    except Exception as error:  # a courtesy: the update is handled already
        log.warning("could not answer callback query %s: %s", query.id, error)
