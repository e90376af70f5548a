"""The audit log as a hash chain: what a sealed entry's hash covers, and the walk that
checks a chain of them (storage/audit_chain.py seals them, storage/audit_retention.py
verifies and archives them; docs/security.md says what the chain shows and what it does
not).

Each sealed entry has a sequence number (1, 2, 3, … in the order it was sealed), the
hash of the entry before it (`prev_hash`; `GENESIS` before the first) and its own hash:
SHA-256 over its content as canonical JSON (sorted keys, no spaces) together with
`prev_hash`. Changing any field of a sealed entry, its hash, or removing one from the
middle breaks the chain at that entry; the walk names the first break.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from enum import StrEnum
from typing import Any

GENESIS = "0" * 64  # the "hash before the first entry"


@dataclass(frozen=True)
class Entry:
    """An audit entry as the chain sees it: its content, and its seal (None while
    unsealed)."""

    id: int
    at: datetime
    actor_telegram_id: int | None
    actor_user_id: int | None
    chat_id: int | None
    action: str
    subject_type: str | None
    subject_id: str | None
    detail: Mapping[str, Any]
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None

    def content(self, seq: int) -> dict[str, Any]:
        """What the hash covers besides the previous hash: every column but the seal,
        with the sequence number it is sealed under."""
        return {
            "id": self.id,
            "seq": seq,
            "at": self.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor_telegram_id": self.actor_telegram_id,
            "actor_user_id": self.actor_user_id,
            "chat_id": self.chat_id,
            "action": self.action,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "detail": dict(self.detail),
        }


# json.dumps with these options would build an encoder for every entry sealed.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canonical(value: Mapping[str, Any]) -> bytes:
    """One byte string per value, whatever the order of its keys."""
    return _CANONICAL.encode(value).encode("utf-8")


def entry_hash(entry: Entry, seq: int, prev_hash: str) -> str:
    return hashlib.sha256(canonical({**entry.content(seq), "prev": prev_hash})).hexdigest()


class Problem(StrEnum):
    """Why a chain is broken, at its first break."""

    gap = "gap"  # a sequence number is missing: an entry was removed (or renumbered)
    link = "link"  # prev_hash is not the hash of the entry before it
    content = "content"  # the entry no longer matches its hash: a field was changed
    tail = "tail"  # the head says the chain goes further than the entries do
    head = "head"  # entries are sealed but the head row that anchors them is gone
    joint = "joint"  # the archive files do not end where the database's chain begins
    unreadable = "unreadable"  # an archive file, or a line of one, cannot be read


@dataclass(frozen=True)
class Break:
    """The first place the chain does not hold: the entry (when there is one), what is
    wrong, and what was expected against what was found."""

    problem: Problem
    seq: int
    id: int | None = None
    expected: str = ""
    found: str = ""


class ChainWalk:
    """Checks entries fed in sequence order from where the kept chain starts (`seq`,
    `hash`: 0 and GENESIS, or the last entry retention removed), then `end()` against
    the head. Stops at the first break."""

    def __init__(self, seq: int = 0, hash: str = GENESIS) -> None:
        self.base_seq, self.base_hash = seq, hash
        self.first_seq = seq + 1
        self.seq, self.hash = seq, hash
        self.count = 0
        self.broken: Break | None = None

    def feed(self, entry: Entry) -> Break | None:
        if self.broken is not None:
            return self.broken
        expected_seq = self.seq + 1
        if entry.seq != expected_seq:
            self.broken = Break(Problem.gap, expected_seq, entry.id, str(expected_seq),
                                str(entry.seq))
        elif entry.prev_hash != self.hash:
            self.broken = Break(Problem.link, expected_seq, entry.id, self.hash,
                                str(entry.prev_hash))
        elif entry.hash != (computed := entry_hash(entry, expected_seq, self.hash)):
            self.broken = Break(Problem.content, expected_seq, entry.id, computed,
                                str(entry.hash))
        else:
            self.seq, self.hash = expected_seq, computed
            self.count += 1
        return self.broken

    def end(self, head_seq: int, head_hash: str) -> Break | None:
        """After the last entry: the head must name it (else entries after it were
        removed, or the head was changed)."""
        if self.broken is None and (head_seq, head_hash) != (self.seq, self.hash):
            self.broken = Break(Problem.tail, self.seq + 1, None,
                                f"{head_seq} {head_hash}", f"{self.seq} {self.hash}")
        return self.broken


@dataclass(frozen=True)
class Named:
    """Something an entry is about, as it is called now (a liaison with their unit)."""

    name: str
    unit: str | None = None


class ActionKind(StrEnum):
    """What an audit entry is, as /audit and the export tell it: someone looked at
    something, changed something, was refused, or the bot itself acted."""

    view = "view"
    change = "change"
    refused = "refused"
    system = "system"


# Besides every `*.view`: entries that record what someone took away, not a change.
VIEW_ACTIONS = frozenset({"request.export", "request.stats", "notice.export", "audit.export"})


def action_kind(action: str, has_actor: bool) -> ActionKind:
    if action.endswith(".view") or action in VIEW_ACTIONS:
        return ActionKind.view
    if action.endswith("_refused") or action.endswith(".refused"):
        return ActionKind.refused
    return ActionKind.change if has_actor else ActionKind.system
