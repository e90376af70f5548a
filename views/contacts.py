"""Contact cards' buttons: each phone number shown copied in one tap (Bot API 7.11
`copy_text`), so a duty officer dials it without retyping it from the card."""

from __future__ import annotations

import re
from collections.abc import Iterable

from i18n import Translator
from views.buttons import COPY_TEXT_MAX
from views.buttons import Button

# One button a row, so every label shows the whole name and number. A page of five
# cards with two numbers each fits; past that the keyboard would bury the page's other
# buttons, so the numbers given first (the cards' people) are the ones offered.
COPY_PHONES_MAX = 10
NOT_DIGITS = re.compile(r"\D")


def copy_phone_rows(tr: Translator, numbers: Iterable[tuple[str, str]], *,
                    limit: int = COPY_PHONES_MAX) -> list[list[Button]]:
    """A copy button for each (whose, number), labelled with both in the reader's
    language, in the order given; a number already offered (by its digits) is not
    offered again, and one Telegram cannot copy (empty, too long) is skipped."""
    seen: set[str] = set()
    rows: list[list[Button]] = []
    for whose, number in numbers:
        number = number.strip()
        key = NOT_DIGITS.sub("", number) or number
        if not number or len(number) > COPY_TEXT_MAX or key in seen:
            continue
        seen.add(key)
        rows.append([Button(tr("contacts.copy_phone", name=whose, phone=number), copy=number)])
        if len(rows) == limit:
            break
    return rows
