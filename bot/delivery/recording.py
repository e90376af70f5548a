"""Outcomes written back to the outbox, several in one short transaction, and the
`on_sent` hooks run for each row once its delivery is recorded."""

from __future__ import annotations

import asyncio
import logging

from bot.delivery.state import Outcome
from bot.delivery.state import WorkerState
from storage.chat_status import mark_chat_migrated
from storage.chat_status import mark_chat_unreachable
from storage.models import OutboxMessage
from storage.outbox_claims import mark_failed
from storage.outbox_claims import mark_retry
from storage.outbox_claims import mark_sent

log = logging.getLogger("bot.delivery")  # the package's one logger, as operators know it


class Recording(WorkerState):
    """Records the outcomes of sends, retrying while the database does not answer."""

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

    async def _record(self, batch: list[Outcome]) -> list[OutboxMessage]:
        sent: list[OutboxMessage] = []
        now = self.clock()
        async with self.db.session() as session:
            for o in batch:
                job = o.job
                if o.kind == "sent":
                    row = await mark_sent(session, job.id, o.message_id, now,
                                          attempt=job.attempt)
                    if row is not None:
                        sent.append(row)
                elif o.kind == "retry":
                    await mark_retry(session, job.id, o.next_attempt_at or now, o.error,
                                     attempt=job.attempt, count_attempt=o.count_attempt)
                elif o.kind == "failed":
                    await mark_failed(session, job.id, o.error or "failed", attempt=job.attempt)
                elif o.kind == "unreachable":
                    await mark_failed(session, job.id, f"chat unreachable: {o.error}",
                                      attempt=job.attempt)
                    dropped = await mark_chat_unreachable(
                        session, job.chat_id, o.error or "", now=now
                    )
                    self.counters.failed += dropped
                    self.counters.by_error["chat unreachable"] += dropped
                elif o.kind == "migrated" and o.new_chat_id is not None:
                    await mark_chat_migrated(session, job.chat_id, o.new_chat_id)
                    await mark_retry(session, job.id, now, o.error, attempt=job.attempt,
                                     count_attempt=False, chat_id=o.new_chat_id)
        return sent

    async def _run_hooks(self, row: OutboxMessage) -> None:
        for hook in list(self.on_sent):
            try:
                await hook(row)
            except Exception:
                log.exception("on_sent hook failed for outbox row %s", row.id,
                              extra={"outbox_id": row.id, "chat_id": row.chat_id})
