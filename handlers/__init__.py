"""One module per user-facing feature; each exposes COMMANDS and register(application).

FALLBACKS register after every feature: plain-text lookups must not take messages
that a feature's conversation is waiting for.
"""

from handlers import admin, agreements, contacts, meetings, requests, start

FEATURES = [start, admin, contacts, agreements, meetings, requests]
FALLBACKS = [contacts.register_fallbacks]
