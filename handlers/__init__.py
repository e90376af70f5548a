"""One module per user-facing feature; each exposes COMMANDS and register(application)."""

from handlers import admin, meetings, start

FEATURES = [start, admin, meetings]
