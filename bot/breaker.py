"""Whether Telegram answers this process: the delivery worker's circuit breaker.

Every process sends the outbox. One that cannot reach Telegram (its network, its proxy,
its DNS) while the others can should leave the rows to them: if it kept claiming, every
row it took would wait out a time-out and a growing backoff, and could even be failed
after `max_attempts`, though another process could have sent it at once.

The worker tells the breaker how each send went:
- Telegram answered (sent, or an error Telegram gave: 400, 403, 429…): the count of
  unanswered sends starts again. A 5xx proves nothing either way and is not counted.
- no answer at all (`unanswered`: refused, dropped, timed out): counted. At `threshold`
  in a row the worker stops claiming and asks getMe; if getMe is answered the failures
  were the chats' own, and the count starts again.
- getMe got no answer either: the breaker opens, with one WARNING. The worker gives
  back the rows it holds, without counting an attempt, and claims nothing until getMe
  is answered; it asks again after `probe_min` seconds, doubling up to `probe_max`.
  The first answer closes the breaker, with one INFO.

No logging per row: one line when the breaker opens (the reason: the send's error and
getMe's; bot/logs.py redacts the token), one when it closes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from telegram.error import BadRequest
from telegram.error import NetworkError
from telegram.error import TelegramError
from telegram.error import TimedOut

log = logging.getLogger(__name__)

THRESHOLD = 3
PROBE_MIN_SECONDS = 1.0
PROBE_MAX_SECONDS = 30.0


def heard(error: TelegramError) -> bool | None:
    """Whether the call that raised `error` reached Telegram: True when Telegram answered
    (with an error), False when nothing answered, None for a 5xx (something answered,
    perhaps not Telegram).

    PTB raises a bare NetworkError both for a 5xx and for a failed connection; only the
    latter is raised from the HTTP library's exception.
    """
    if isinstance(error, TimedOut):
        return False
    if isinstance(error, NetworkError) and not isinstance(error, BadRequest):
        cause = error.__cause__
        return None if cause is None or isinstance(cause, TelegramError) else False
    return True


class CircuitBreaker:
    """Closed (claims allowed), suspect (`threshold` unanswered sends: claims paused until
    getMe says), or open (claims stopped; getMe asked on a capped backoff).

    Pure bookkeeping on an injectable monotonic `clock`: the worker makes the calls.
    """

    def __init__(self, name: str = "delivery", *, threshold: int = THRESHOLD,
                 probe_min: float = PROBE_MIN_SECONDS, probe_max: float = PROBE_MAX_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or not 0 < probe_min <= probe_max:
            raise ValueError("a breaker needs a positive threshold and 0 < probe_min <= probe_max")
        self.name = name
        self.threshold = threshold
        self.probe_min = probe_min
        self.probe_max = probe_max
        self.clock = clock
        self.unanswered_in_a_row = 0
        self.opened_at: float | None = None
        self.reason = ""
        self.times_opened = 0
        self._wait = probe_min
        self._next_probe = 0.0

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    @property
    def allows_claims(self) -> bool:
        return not self.is_open and self.unanswered_in_a_row < self.threshold

    def answered(self) -> None:
        """A send got Telegram's answer (success or error)."""
        self.unanswered_in_a_row = 0

    def unanswered(self) -> bool:
        """A send got no answer; True when that makes `threshold` in a row (or more): time
        to ask getMe before deciding anything about the row."""
        self.unanswered_in_a_row += 1
        return self.unanswered_in_a_row >= self.threshold

    def probe_in(self) -> float:
        """Seconds until the open breaker asks getMe again (0: now)."""
        return max(0.0, self._next_probe - self.clock())

    def probe_failed(self, reason: str) -> bool:
        """getMe got no answer: open (True the first time, with the WARNING) and ask
        again later, each wait twice the last, up to `probe_max`."""
        now = self.clock()
        opened = not self.is_open
        if opened:
            self.opened_at = now
            self.reason = reason
            self.times_opened += 1
            self._wait = self.probe_min
            log.warning("Telegram does not answer worker %s (%s): it stops claiming outbox "
                        "rows, gives back those it holds and leaves them to other processes "
                        "until getMe answers (asked again after %.0f s, then up to every "
                        "%.0f s)", self.name, reason, self._wait, self.probe_max)
        else:
            self._wait = min(self._wait * 2, self.probe_max)
        self._next_probe = now + self._wait
        return opened

    def probe_succeeded(self) -> bool:
        """getMe answered: closed again (True if it was open, with the INFO)."""
        self.unanswered_in_a_row = 0
        if self.opened_at is None:
            return False
        log.info("Telegram answers worker %s again after %.0f s: it claims outbox rows again",
                 self.name, self.clock() - self.opened_at)
        self.opened_at = None
        self.reason = ""
        return True
