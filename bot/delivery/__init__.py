"""The delivery worker: drains the outbox through PTB's HTTP stack within Telegram's limits.

Life of a row: claimed in a short transaction (`storage.outbox_claims.claim_batch`, leased),
sent with no transaction open (`Bot.do_api_request`, so PTB's request stack and the
configured base_url are used), and the outcome recorded in another short transaction
(several outcomes share one). A chat has at most one row in flight, so its messages go
out in order.

Rate limits are sliding windows ("at most N sends in any W seconds"): 20 per minute per
group (negative chat id), 1 per second per private chat, and the bot's send budget
(bot/ratebudget/: DELIVERY_RATE a second for the whole bot, shared with handlers'
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

Where: `worker.py` the `DeliveryWorker` (its life, claiming, leases); `sending.py` one
row's call and what its answer means; `reachability.py` the breaker's questions when
sends go unanswered; `recording.py` the outcomes written back; `state.py` what a worker
holds.
"""
