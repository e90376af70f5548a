"""A clock tests set and advance (core.clock says why code takes a clock)."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta

from core.clock import as_utc


class FakeClock:
    """A clock tests set and advance; it never moves by itself."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)

    def now(self) -> datetime:
        return self._now

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by `delta` or by keyword units (`advance(minutes=5)`); never back."""
        step = delta if delta is not None else timedelta(**units)
        if step < timedelta(0):
            raise ValueError("a clock does not run backwards; use set()")
        self._now += step
        return self._now

    def set(self, instant: datetime) -> datetime:
        """Jump to `instant` (backwards too: tests of restarts need it)."""
        self._now = as_utc(instant)
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"
