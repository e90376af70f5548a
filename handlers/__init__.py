"""One module per user-facing feature; each exposes COMMANDS and register(application).

FALLBACKS register after every feature: plain-text lookups must not take messages
that a feature's conversation is waiting for.
"""

from handlers import admin
from handlers import agreements
from handlers import audit
from handlers import chair
from handlers import chat_membership
from handlers import contacts
from handlers import meetings
from handlers import notices
from handlers import requests
from handlers import roster
from handlers import start

FEATURES = [start, chat_membership, admin, audit, contacts, agreements, meetings, roster, chair,
            requests, notices]
FALLBACKS = [contacts.register_fallbacks, start.register_fallbacks]
