"""What the request modules share: the prefixes of their buttons' data, the patterns of
the ids and tokens that data carries, and the rules' policy from the settings."""

from __future__ import annotations

from bot.services import Services
from core.request_checks import Policy

# Button data: the new-request flow, the prompts after a request's buttons, the pages
# of /requests, one request's view.
NEW, ACT, LIST, VIEW = "rqn", "rqx", "rql", "rqv"
# The token a confirmation's buttons carry (handlers/common.py).
TOKEN = "[0-9a-f]{8}"
# A database id in button data: at most 9 digits, so a forged one cannot overflow
# PostgreSQL's integer columns.
DB_ID = r"(\d{1,9})"


def policy(svc: Services) -> Policy:
    return Policy.from_settings(svc.settings)
