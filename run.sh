#!/usr/bin/env bash
# Run Liaison Desk: set up .venv, apply migrations, load data/sample.yaml into an empty
# database, then serve Telegram (BOT_TOKEN set) or start the offline console (not set).
cd "$(dirname "$0")"
source scripts/venv.sh
exec .venv/bin/python -m bot run "$@"
