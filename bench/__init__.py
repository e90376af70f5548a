"""Benchmarks; speed targets live here, never in unit tests."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

BACKENDS = ("sqlite", "postgresql")


def add_backend_option(parser: argparse.ArgumentParser, default: str = "sqlite") -> None:
    """`--backend sqlite|postgresql|both`, read back by `chosen_backends`."""
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default=default)


def chosen_backends(args: argparse.Namespace) -> tuple[str, ...]:
    return BACKENDS if args.backend == "both" else (args.backend,)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (NaN for no values): one definition for every table."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


VERDICTS = {True: "OK", False: "MISSED", None: "-"}  # None: a figure shown for information


def judged(ok: bool, target: str) -> str:
    """A figure's verdict as every benchmark prints it: `[OK: target p99 < 2 s]`."""
    return f"[{VERDICTS[ok]}: {target}]"
