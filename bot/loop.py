"""The event loop the bot runs on: uvloop, asyncio's own API with its loop in C (its
sockets, callbacks and tasks cost about a ninth of an answered lookup's CPU less than
asyncio's). Every `python -m bot` verb runs on it, and so do the tests and the
benchmarks' in-process parts: what is tested and measured is what runs."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any
from typing import TypeVar

import uvloop

T = TypeVar("T")

new_event_loop = uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the bot's event loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
