"""The bot as a process: update throughput against a bare echo bot, memory, start-up time.

    .venv/bin/python -m bench.throughput [--rows 100000] [--updates 1000] [--rounds 3]

A SQLite database is migrated and loaded with `rows` liaisons (bench.directory's synthetic
directory, search index built). The Bot API emulator runs in its own process. Then, in
the same run, against the same emulator, each through PTB's real HTTP stack (getUpdates
long polling), with the updates coming from OFFICERS people in turn (a desk's load is
many officers at once; one person's updates are handled in order, bot/updates.py):
1. the bot (`python -m bot run`, the officers registered through ADMIN_IDS) is started
   with one `/contact` update waiting: start-up time = process start → that update
   answered;
2. `updates` `/contact <province>` updates are queued at once: updates/s = updates / (time
   from queueing to the last answer); then resident memory (VmRSS of the bot process);
3. a bare python-telegram-bot echo bot (`python -m bench.throughput --echo`) gets the same
   number of plain text updates the same way;
4. the same bare bot answering each with the bot's first /contact answer (same text, same
   HTML, one button: `--echo-page`): what sending that answer costs with no work behind
   it, the ceiling for the bot (its ratio to the echo bot is reported too).
Steps 1–4 repeat for `rounds` rounds, the bots taking turns; each bot is represented by
its median round, and each ratio is the median of the rounds' ratios (the bots of one
round ran back to back): one round lasts seconds, and the shared machine's speed drifts
more than that between them (the echo bot alone measured 491 and 856 updates/s in two runs
minutes apart).
Targets: bot ≥ 0.8 × the echo bot's updates/s; RSS < 200 MB; start-up reported.

`run(...)` returns the figures as a dict for a combined `python -m bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.directory import PROVINCES
from bench.directory import load
from storage.db import Database
from storage.migrate import upgrade
from storage.search.index import refresh_search_index

TOKEN = "7000000002:AAF-bench-throughput-token-0123456789"
USER = 8000001
OFFICERS = 30
TARGET_RATIO = 0.8
TARGET_RSS_MB = 200.0
ROUNDS = 3


def _emulator_process(conn: Any) -> None:
    """Serves; on ("push", texts) queues one update per text, from the officers in turn,
    and answers with (time queued, time of the last answer, answers, first answer's text)
    once every one has a sendMessage answer."""

    async def serve() -> None:
        from bot.emulator import BotApiEmulator

        emulator = BotApiEmulator()
        await emulator.start()
        officers = [USER + i for i in range(OFFICERS)]
        for officer in officers:
            emulator.add_user(officer, f"基准{officer - USER}")
        conn.send((emulator.base_url, emulator.base_file_url))
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] == "stop":
                break
            texts = command[1]
            emulator.clear_calls()
            queued = time.time()
            for index, text in enumerate(texts):
                officer = officers[index % len(officers)]
                emulator.push_message(officer, officer, text)
            answers: list[Any] = []
            deadline = time.monotonic() + 300
            while len(answers) < len(texts) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                answers = [c for c in emulator.calls if c.method == "sendMessage" and c.ok]
            conn.send((queued, max(c.time for c in answers) if answers else float("nan"),
                       len(answers), answers[0].params.get("text", "") if answers else ""))
        await emulator.stop()

    asyncio.run(serve())


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS in /proc/<pid>/status), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def prepare(url: str, rows: int) -> float:
    """Migrate and load the directory; returns the seconds it took."""
    started = time.perf_counter()
    await upgrade(url)
    db = Database(url)
    try:
        await load(db, rows, max(50, rows // 10))
        async with db.session() as session:
            await refresh_search_index(session)
    finally:
        await db.dispose()
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (/proc/<pid>/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _env(base_url: str, file_url: str, url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(BOT_TOKEN=TOKEN, DATABASE_URL=url, TELEGRAM_BASE_URL=base_url,
               TELEGRAM_BASE_FILE_URL=file_url, BOT_MODE="polling", LOG_LEVEL="WARNING",
               ADMIN_IDS=",".join(str(USER + i) for i in range(OFFICERS)),
               # The emulator enforces no limits here: the bot's send budget at Telegram's
               # 30 a second would measure Telegram, not the bot (the echo bot has none).
               DELIVERY_RATE="1000")
    return env


def _measure(conn: Any, argv: list[str], env: dict[str, str], texts: list[str],
             first: str) -> dict[str, Any]:
    """Start a bot process with `first` waiting, then feed `texts`; stop it."""
    conn.send(("push", [first]))
    started = time.time()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        _, answered, count, first_answer = conn.recv()
        if count != 1:
            raise RuntimeError(f"{argv} did not answer its first update")
        cpu_before = cpu_seconds(process.pid)
        conn.send(("push", texts))
        queued, last, count, _ = conn.recv()
        cpu = cpu_seconds(process.pid) - cpu_before
        if count != len(texts):
            raise RuntimeError(f"{argv} answered {count} of {len(texts)} updates")
        rss = rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return {"startup_s": round(answered - started, 2),
            "updates_per_s": round(len(texts) / (last - queued), 1), "rss_mb": round(rss, 1),
            "cpu_ms_per_update": round(1000 * cpu / len(texts), 2),
            "cpu_share": round(cpu / (last - queued), 2),
            "first_answer": first_answer}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median updates/s (its RSS and start-up go with it)."""
    ordered = sorted(runs, key=lambda figures: figures["updates_per_s"])
    return {**ordered[len(ordered) // 2],
            "rounds": [figures["updates_per_s"] for figures in runs]}


def run(rows: int = 100_000, updates: int = 1000, rounds: int = ROUNDS) -> dict[str, Any]:
    """The figures as a dict (also printed), for a combined `python -m bench`.

    The machine is shared and a round lasts seconds, so the three bots take turns for
    `rounds` rounds and each is represented by its median round."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    emulator = context.Process(target=_emulator_process, args=(child,), daemon=True)
    emulator.start()
    runs: dict[str, list[dict[str, Any]]] = {"bot": [], "echo": [], "echo_page": []}
    try:
        base_url, file_url = parent.recv()
        with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bot.db'}"
            load_s = asyncio.run(prepare(url, rows))
            env = _env(base_url, file_url, url)
            queries = [f"/contact {short}" for _, short, _, _ in PROVINCES]
            echo_argv = [sys.executable, "-m", "bench.throughput", "--echo"]
            plain = [f"echo {i}" for i in range(updates)]
            for _ in range(rounds):
                bot = _measure(parent, [sys.executable, "-m", "bot", "run"], env,
                               [queries[i % len(queries)] for i in range(updates)], queries[0])
                runs["bot"].append(bot)
                runs["echo"].append(_measure(parent, echo_argv, env, plain, "echo"))
                runs["echo_page"].append(_measure(
                    parent, [*echo_argv, "--page"], {**env, "ECHO_PAGE": bot["first_answer"]},
                    plain, "echo"))
        parent.send(("stop",))
    finally:
        emulator.join(timeout=10)
        if emulator.is_alive():
            emulator.kill()
    for side in runs.values():
        for figures in side:
            figures.pop("first_answer")
    bot, echo, page = (_median_run(runs[side]) for side in ("bot", "echo", "echo_page"))
    # Each round's bots ran back to back, on the machine as it was then: ratios per round.
    ratios = [b["updates_per_s"] / e["updates_per_s"] for b, e in zip(
        runs["bot"], runs["echo"], strict=True)]
    ceilings = [p["updates_per_s"] / e["updates_per_s"] for p, e in zip(
        runs["echo_page"], runs["echo"], strict=True)]
    ratio, ceiling = statistics.median(ratios), statistics.median(ceilings)
    figures = {"rows": rows, "updates": updates, "officers": OFFICERS, "rounds": rounds,
               "load_s": round(load_s, 1), "bot": bot, "echo": echo, "echo_page": page,
               "ratio": round(ratio, 3), "page_ratio": round(ceiling, 3),
               "round_ratios": [round(r, 2) for r in ratios],
               "target_ratio": TARGET_RATIO, "target_rss_mb": TARGET_RSS_MB}
    print(f"updates/s in {rounds} rounds: bot {bot['rounds']}, echo {echo['rounds']}, bare bot "
          f"sending the bot's answer {page['rounds']}; bot/echo per round "
          f"{figures['round_ratios']}", flush=True)
    print("CPU per update (ms) and share of a core while answering, median rounds: "
          + "; ".join(f"{name} {side['cpu_ms_per_update']} ms, {side['cpu_share']:.0%}"
                      for name, side in (("bot", bot), ("echo", echo),
                                         ("bare bot sending the answer", page))), flush=True)
    print(f"bot /contact on {rows:,} liaisons: {bot['updates_per_s']} updates/s; bare echo "
          f"bot: {echo['updates_per_s']} updates/s; ratio {ratio:.2f} (target ≥ "
          f"{TARGET_RATIO}); bare bot sending the same /contact answer: "
          f"{page['updates_per_s']} updates/s (ratio {ceiling:.2f}, the ceiling); bot RSS "
          f"{bot['rss_mb']} MB (echo {echo['rss_mb']} MB); start-up {bot['startup_s']} s "
          f"(echo {echo['startup_s']} s); directory loaded in {load_s:.0f} s (median rounds; the "
          f"ratios are medians of the per-round ratios)", flush=True)
    return figures


def echo_bot(page: str | None = None) -> None:
    """The reference: python-telegram-bot answering every text with itself, nothing else
    (or, given `page`, with that HTML and one button, as the bot answers /contact)."""
    from telegram import InlineKeyboardButton
    from telegram import InlineKeyboardMarkup
    from telegram import Update
    from telegram.constants import ParseMode
    from telegram.ext import Application
    from telegram.ext import ContextTypes
    from telegram.ext import MessageHandler
    from telegram.ext import filters

    markup = InlineKeyboardMarkup([[InlineKeyboardButton("下一页 ›", callback_data="ct:pg:1:5")]])

    async def echo(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        if page is None:
            await update.effective_message.reply_text(update.effective_message.text or "")
        else:
            await update.effective_message.reply_text(
                page, parse_mode=ParseMode.HTML, reply_markup=markup, do_quote=False,
                disable_web_page_preview=True)

    application = (Application.builder().token(os.environ["BOT_TOKEN"])
                   .base_url(os.environ["TELEGRAM_BASE_URL"])
                   .base_file_url(os.environ["TELEGRAM_BASE_FILE_URL"]).build())
    application.add_handler(MessageHandler(filters.TEXT, echo))
    application.run_polling(allowed_updates=Update.ALL_TYPES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--page", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo:
        echo_bot(os.environ["ECHO_PAGE"] if args.page else None)
        return 0
    figures = run(args.rows, args.updates, args.rounds)
    ok = figures["ratio"] >= TARGET_RATIO and figures["bot"]["rss_mb"] < TARGET_RSS_MB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
