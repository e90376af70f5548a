"""Benchmarks; speed targets live here, never in unit tests."""

from __future__ import annotations

import argparse

BACKENDS = ("sqlite", "postgresql")


def add_backend_option(parser: argparse.ArgumentParser, default: str = "sqlite") -> None:
    """`--backend sqlite|postgresql|both`, read back by `chosen_backends`."""
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default=default)


def chosen_backends(args: argparse.Namespace) -> tuple[str, ...]:
    return BACKENDS if args.backend == "both" else (args.backend,)
