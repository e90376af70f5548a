"""Every benchmark in one command, one table: `python -m bench [--quick] [--only NAME]`.

Benchmarks (NAME): throughput (bot vs echo bot, RSS, start-up: bench.throughput),
lookup (bench.lookup), reminders (bench.reminders, scheduler + outbox path),
broadcast (bench.broadcast, clean, with 10% faults, and with officers' lookups answered
during it on SQLite and PostgreSQL). Each prints its own detail
as it runs; the table at the end has one row per figure with its target and verdict.
The full run takes about 8 minutes on the 2-core machine; `--quick` uses small sizes
(a smoke test: its figures mean nothing). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from typing import Any

from bench import VERDICTS
from bench import broadcast
from bench import lookup
from bench import reminders
from bench import throughput

Row = tuple[str, str, str, bool | None]  # figure name, value, target, verdict (None: info)

FULL = {"rows": 100_000, "updates": 1000, "reminders": 5000, "reminder_rooms": 1000,
        "rooms": 1000, "lookup_backends": ("sqlite", "postgresql"),
        "reply_backends": ("sqlite", "postgresql")}
QUICK = {"rows": 2000, "updates": 20, "reminders": 50, "reminder_rooms": 10,
         "rooms": 30, "lookup_backends": ("sqlite",), "reply_backends": ("sqlite",)}


def bench_throughput(sizes: dict[str, Any]) -> list[Row]:
    f = throughput.run(sizes["rows"], sizes["updates"])
    bot, echo = f["bot"], f["echo"]
    return [
        (f"updates/s, /contact on {f['rows']:,} liaisons vs bare echo bot (median round)",
         f"{f['ratio']:.2f} (rounds {' '.join(f'{r:.2f}' for r in f['round_ratios'])})",
         f"≥ {f['target_ratio']}", f["ratio"] >= f["target_ratio"]),
        ("updates/s: bot, echo bot, bare bot sending the same /contact answer (medians)",
         f"{bot['updates_per_s']}, {echo['updates_per_s']}, {f['echo_page']['updates_per_s']}",
         f"(ceiling {f['page_ratio']:.2f})", None),
        (f"resident memory, {f['rows']:,} liaisons, bot running", f"{bot['rss_mb']} MB",
         f"< {f['target_rss_mb']:.0f} MB", bot["rss_mb"] < f["target_rss_mb"]),
        ("start-up: process start → first update answered", f"{bot['startup_s']} s",
         f"(echo bot {echo['startup_s']} s)", None),
    ]


def bench_lookup(sizes: dict[str, Any]) -> list[Row]:
    results = lookup.run(sizes["rows"], sizes["lookup_backends"])
    rows: list[Row] = []
    for backend, f in results.items():
        if "skipped" in f:
            rows.append((f"lookup ({backend})", "skipped", f["skipped"], None))
            continue
        s = f["search"]["all"]
        rows.append((f"lookup p50/p99 ({backend}, {f['rows']:,} liaisons)",
                     f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} ms",
                     f"p99 ≤ {f['target_p99_ms']} ms", f["ok"]))
    return rows


def bench_reminders(sizes: dict[str, Any]) -> list[Row]:
    results = reminders.run(sizes["reminders"], sizes["reminder_rooms"], ("sqlite",),
                            real=False)
    rows: list[Row] = []
    for f in results["runs"]:
        rows.append((f"reminder lateness p50/p99 ({f['reminders']:,} due in a minute)",
                     f"{f['p50_s']:.2f} / {f['p99_s']:.2f} s",
                     f"p99 < {results['target_p99_s']:.0f} s",
                     f["p99_s"] < results["target_p99_s"] and f["delivered"] == f["reminders"]))
    return rows


def bench_broadcast(sizes: dict[str, Any]) -> list[Row]:
    runs = broadcast.run(sizes["rooms"])["runs"]
    runs += broadcast.run(sizes["rooms"], sizes["reply_backends"], ("replies",))["runs"]
    rows: list[Row] = []
    for f in runs:
        where = f" ({f['backend']})" if f["mode"] == "replies" else ""
        rows.append((f"broadcast to {f['rooms']:,} rooms / ({f['rooms']:,}/30 s), "
                     f"{f['mode']}{where}",
                     f"{f['ratio']:.3f} (lost {f['lost']}, twice {f['duplicates']})",
                     f"≤ {f['target']}", f["ratio"] <= f["target"] and not f["lost"]
                     and not f["duplicates"]))
        if f["mode"] == "replies":
            rows.append((f"lookups answered during it ({f['backend']}): answered, p99",
                         f"{f['replies_answered']}/{f['replies_asked']}, "
                         f"{f['reply_p99_s']:.2f} s",
                         f"all, p99 < {f['reply_target_p99_s']:.0f} s", f["replies_ok"]))
    return rows


BENCHMARKS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "throughput": bench_throughput,
    "lookup": bench_lookup,
    "reminders": bench_reminders,
    "broadcast": bench_broadcast,
}


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · load average "
            f"{load} · Python {platform.python_version()} · {platform.platform()}")


def table(rows: list[Row]) -> str:
    lines = [("figure", "measured", "target", "verdict")]
    lines += [(name, value, target, VERDICTS[ok]) for name, value, target, ok in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    out = [" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
           for line in lines]
    out.insert(1, "-|-".join("-" * width for width in widths))
    return "\n".join(out)


def run(names: list[str], sizes: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        print(f"\n== {name}", flush=True)
        started = time.perf_counter()
        rows += BENCHMARKS[name](sizes)
        print(f"({name}: {time.perf_counter() - started:.0f} s)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append",
                        help="run only this benchmark (repeatable)")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    print(f"machine: {machine()}", flush=True)
    started = time.perf_counter()
    rows = run(names, QUICK if args.quick else FULL)
    print(f"\nmachine: {machine()}\ntotal {time.perf_counter() - started:.0f} s\n")
    print(table(rows))
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
