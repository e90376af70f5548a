"""One module per user-facing feature; each exposes COMMANDS and register(application).

FALLBACKS register after every feature: plain-text lookups must not take messages
that a feature's conversation is waiting for.
"""

from handlers import (
    admin,
    agreements,
    audit,
    chair,
    chat_membership,
    contacts,
    meetings,
    notices,
    requests,
    roster,
    start,
)

FEATURES = [start, chat_membership, admin, audit, contacts, agreements, meetings, roster, chair,
            requests, notices]
FALLBACKS = [contacts.register_fallbacks, start.register_fallbacks]
