"""Smoke tests of `python -m bench`: each piece runs at tiny sizes and returns sane figures.

No timing assertions: speed targets live in bench/, measured on a quiet machine.
"""

from __future__ import annotations

import pytest

from bench import broadcast
from bench import lookup
from bench import throughput
from bench.__main__ import BENCHMARKS
from bench.__main__ import QUICK
from bench.__main__ import table


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_broadcast_reaches_every_room_once(backend: str) -> None:
    results = await broadcast.run_async(12, (backend,), broadcast.MODES,
                                        stall_seconds=1.0, status_edit_seconds=0.2)
    clean, faulty, replies = results["runs"]
    for figures in (clean, faulty, replies):
        assert figures["delivered"] == figures["rooms"] == 12
        assert figures["lost"] == 0 and figures["duplicates"] == 0
        assert figures["ratio"] > 0 and figures["seconds"] > 0
    assert clean["injected_faults"] == 0 and clean["worker_retries"] == 0
    assert faulty["mode"] == "10% faults" and faulty["target"] == broadcast.TARGET_FAULTS
    asked = broadcast.OFFICERS * broadcast.ASKS
    assert replies["replies_asked"] == replies["replies_answered"] == asked
    assert 0 < replies["reply_p50_s"] <= replies["reply_p99_s"] <= replies["reply_max_s"]
    assert replies["replies_429"] == replies["emulator_429"] == 0


def test_broadcast_figures_count_losses_and_duplicates() -> None:
    first = broadcast.FIRST_CHAT
    calls = [
        (first, True, 10.0, None, 200),
        (first - 1, False, 10.1, "500", 500),
        (first - 1, True, 11.0, None, 200),
        (first - 1, True, 12.0, None, 200),  # sent twice, no stall to explain it
        (first - 2, True, 10.2, "timeout", 200),
        (first - 2, True, 16.0, None, 200),  # after a stall the client gave up on
    ]
    figures = broadcast.figures(calls, rooms=4, committed=9.0, faults=True, retried=2,
                                rate_limited=0, failed=0, over_limit=0)
    assert figures["delivered"] == 3 and figures["lost"] == 1
    assert figures["duplicates"] == 1 and figures["ambiguous_duplicates"] == 1
    assert figures["seconds"] == 2.0  # the last room's first copy, at 11.0
    assert not figures["ok"]


def test_reply_figures_match_each_lookup_with_its_answer() -> None:
    officer = broadcast.FIRST_OFFICER
    calls = [
        (officer, False, 10.2, None, 429),
        (officer, True, 11.2, None, 200),
        (officer + 1, True, 10.5, None, 200),
        (officer + 1, True, 12.5, None, 200),  # an error message, not an answer
        (broadcast.FIRST_CHAT, False, 10.1, None, 429),  # a room, not an officer
        (None, False, 10.3, None, 400),  # a chat the emulator does not know (the sample's)
    ]
    answers = [(officer + 1, 10.5), (officer, 11.2)]
    asked = [(officer, 10.0), (officer + 1, 10.1), (officer + 1, 12.0)]  # the last unanswered
    figures = broadcast.reply_figures(calls, answers, asked)
    assert figures["replies_asked"] == 3 and figures["replies_answered"] == 2
    assert figures["replies_429"] == 1
    assert figures["reply_p50_s"] == 0.4 and figures["reply_max_s"] == 1.2  # latencies 0.4, 1.2
    assert not figures["replies_ok"]


def test_throughput_bot_and_echo_bot_answer_every_update() -> None:
    figures = throughput.run(rows=300, updates=5, rounds=2)
    for side in ("bot", "echo", "echo_page"):
        assert figures[side]["updates_per_s"] > 0
        assert 10 < figures[side]["rss_mb"] < 2000
        assert figures[side]["startup_s"] > 0
        assert len(figures[side]["rounds"]) == 2
    assert figures["ratio"] > 0 and figures["page_ratio"] > 0


def test_lookup_and_the_table() -> None:
    results = lookup.run(300, ("sqlite",), repeat=1)
    search = results["sqlite"]["search"]["all"]
    assert search["n"] > 0 and 0 < search["p50_ms"] <= search["p99_ms"]
    rows = BENCHMARKS["lookup"]({**QUICK, "rows": 300})
    text = table([*rows, ("broadcast", "1.01", "≤ 1.1", True), ("start-up", "1 s", "", None)])
    lines = text.splitlines()
    assert lines[0].startswith("figure") and len(lines) == 2 + len(rows) + 2
    assert "MISSED" in text or "OK" in text
    assert lines[-1].rstrip().endswith("-")
