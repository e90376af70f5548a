"""One send budget per bot: replies, edits, button answers and outbox rows share Telegram's rate.

Telegram allows a bot about 30 messages a second, whatever they are and whichever
process sends them. The outbox alone can use all of it (a notice to hundreds of duty
rooms), and replies sent beside it used to get 429 and were lost: during a 310-room
notice, 13 of 20 officers' lookups. So every message-making Bot API call of a process
first takes a slot from its `SendBudget` (DELIVERY_RATE: the bot's messages a second,
all processes together):

- handlers' calls through `BudgetRateLimiter`, PTB's rate-limiter hook: sendMessage,
  editMessageText, answerCallbackQuery and the like (`budgeted`), not getUpdates, getMe
  or setMyCommands;
- outbox rows through an `OutboxLane` (bot/delivery/), where a row that cannot
  start in time is given back to the outbox.

Replies first: a reply never waits behind an outbox row. While one waits, the outbox
takes no slot; otherwise the outbox takes all there is. Setting a share aside for
replies (say a fifth while replies flow) would lose it whenever fewer replies come, and
a 1,000-room notice would take that much longer; yielding gives replies what they need
when they need it and the outbox the rest.

In a process, at most DELIVERY_RATE sends start in any second, each counted from its
start until a second after its answer (`SlidingWindow`: Telegram saw it somewhere in
between, so Telegram never counts more, whatever the latency). Outbox rows are also
paced 1/rate apart: a burst queues in the connection pool and lengthens every round
trip, and so every window.

Across processes (PostgreSQL, `SlotLedger`): every send also needs a start time booked
in the database (storage/sendbudget.py), spaced so the bot as a whole starts at most
(1 − MARGIN) × DELIVERY_RATE a second. Points that far apart put at most
ceil((1 + j)(1 − MARGIN) × rate) in any second when each may arrive up to j seconds
late, so the 3% margin absorbs j ≤ 31 ms: a slot is used at most SLOT_GRACE late (later,
it is dropped and another booked), the rest is left for the network. (A bigger margin
costs every broadcast as much: 5% made a 1,000-room notice 5% slower.) A process books
up to BOOKING_MAX slots at once for whoever waits (replies take the earliest); the
outbox books only while the next free slot is at most OUTBOX_HORIZON ahead, so a reply
in any process waits about that plus one booking of each busy process. When the
database does not answer, a process keeps to its own window for LEDGER_PAUSE seconds
(with a warning): replies still go out, the outbox cannot claim rows then anyway.
SQLite runs one process: its window is the whole budget.

A reply answered 429 all the same waits `retry_after` and is sent again (at most
REPLY_RETRIES times, for waits up to REPLY_RETRY_MAX_WAIT seconds) instead of being
dropped; an outbox row is rescheduled by the worker.

Where: `window.py` the sliding windows; `budget.py` the process's `SendBudget`, its
priorities and the outbox's lane; `ledger.py` the slots booked in PostgreSQL;
`limiter.py` PTB's rate-limiter hook for handlers' calls, with the 429 retries.
"""
