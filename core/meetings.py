"""Meetings as people type them: a meeting kind, reminder offsets (7d 1d 1h)."""

from __future__ import annotations

import re

from core.enums import MeetingKind
from core.normalize import normalize
from core.normalize import word_table

# A meeting kind as people type it (chat commands and data files): code, 简体 or 繁體.
MEETING_KIND_WORDS = word_table({
    MeetingKind.joint: "joint 联席会议 聯席會議 联席 聯席",
    MeetingKind.area: "area 片会 片會",
    MeetingKind.regular: "regular 例会 例會",
    MeetingKind.drill: "drill 演练 演練",
    MeetingKind.training: "training 培训 培訓",
})
OFFSET_SEPARATORS = re.compile(r"[、,，;；\s]+")


def parse_meeting_kind(text: str) -> MeetingKind | None:
    """'joint', '联席会议', '聯席會議', '联席' → MeetingKind.joint (None if not a kind)."""
    word = text.strip()
    return MEETING_KIND_WORDS.get(word.lower()) or MEETING_KIND_WORDS.get(normalize(word))


def parse_offsets(text: str, *, maximum: int) -> list[int] | None:
    """'7d 1d 1h' (also 、 , ; separated) → [10080, 1440, 60], largest first, each between
    one minute and `maximum` minutes; None if any part is not an offset."""
    values = []
    for part in OFFSET_SEPARATORS.split(text.strip()):
        if not part:
            continue
        minutes = parse_offset(part)
        if minutes is None or not 1 <= minutes <= maximum:
            return None
        values.append(minutes)
    return sorted(set(values), reverse=True) or None


def parse_offset(text: str) -> int | None:
    """'7d', '1d', '1h', '90m', '1d12h', '7天', '1小时', '30分钟' → minutes (None if not one)."""
    units = {"d": 24 * 60, "天": 24 * 60, "h": 60, "小时": 60, "時": 60, "小時": 60,
             "m": 1, "min": 1, "分钟": 1, "分鐘": 1, "分": 1}
    remaining = text.strip().lower().replace(" ", "")
    if not remaining:
        return None
    total = 0
    while remaining:
        digits = ""
        while remaining and remaining[0].isdecimal():
            digits, remaining = digits + remaining[0], remaining[1:]
        if not digits:
            return None
        for name in sorted(units, key=len, reverse=True):
            if remaining.startswith(name):
                total += int(digits) * units[name]
                remaining = remaining[len(name):]
                break
        else:
            return None
    return total
