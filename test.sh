#!/usr/bin/env bash
# Run the whole test suite (lint, the layers, types, then pytest on SQLite and PostgreSQL).
# PostgreSQL tests use TEST_POSTGRES_URL (default postgres@127.0.0.1:5432) and are
# skipped with a reason when no server answers, except under CI=true.
# Two workers (pytest-xdist), each with databases of its own; `./test.sh -n 0` runs
# everything in this one process.
cd "$(dirname "$0")"
source scripts/venv.sh
.venv/bin/ruff check .
.venv/bin/lint-imports --no-logo --no-cache  # the layers (pyproject.toml)
.venv/bin/mypy  # strict on core/ and services/ (pyproject.toml)
exec .venv/bin/python -m pytest -n 2 "$@"
