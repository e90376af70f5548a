"""A phone number as people write it, checked by libphonenumber: the one rule the
directory's import and the roster's officers share."""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

PHONE_REGION = "CN"  # numbers without a country code are Chinese
PHONE_MAX = 40  # the columns' width
_EXTENSION_MARK = r"\s*(?:转|轉|分机|分機|ext\.?|x|#)\s*"
_EXTENSION = re.compile(_EXTENSION_MARK + r"(\d{1,6})$", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"^\+?[0-9 ()\-./]+$")
# An extension written right after a number found in free text (`numbers_in`).
_EXTENSION_AFTER = re.compile(_EXTENSION_MARK + r"\d{1,6}(?!\d)", re.IGNORECASE)
_DASHES = str.maketrans(dict.fromkeys("‐‑‒–—―－", "-"))
_REASONS = {
    phonenumbers.ValidationResult.TOO_SHORT: "phone_too_short",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "phone_too_short",
    phonenumbers.ValidationResult.TOO_LONG: "phone_too_long",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "phone_bad_country",
    phonenumbers.ValidationResult.INVALID_LENGTH: "phone_bad_length",
}


class PhoneProblem(ValueError):
    """Why a text is not a phone number: `key` names the message (the import's problem
    catalogue, `import.problems.<key>`), `values` fill it."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def checked_phone(raw: str) -> str | None:
    """The number as written, if libphonenumber finds it possible (China unless it has
    a '+' code); None for an empty text; PhoneProblem otherwise.

    Possible, not valid: the length fits the country's plan, whatever the prefix, so
    the fictional ranges of samples (+86 100 …) pass and `16O2` or `待补` do not. The
    number keeps the author's grouping (full-width digits and dashes made plain, spaces
    single), and an extension (转 / ext. / x / #) is written ` ext. N`, so the digits
    the search indexes are the author's.
    """
    number = " ".join(unicodedata.normalize("NFKC", raw.strip()).translate(_DASHES).split())
    if not number:
        return None
    extension = _EXTENSION.search(number)
    if extension:
        number = number[:extension.start()].strip()
    if not _PHONE_CHARS.match(number):
        letters = sorted({c for c in number if c.isascii() and c.isalpha()})
        if letters:
            raise PhoneProblem("phone_letters", value=raw, letters=", ".join(letters))
        raise PhoneProblem("phone_not_number", value=raw)
    try:
        parsed = phonenumbers.parse(number, PHONE_REGION)
    except phonenumbers.NumberParseException as exc:
        bad_country = exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
        raise PhoneProblem("phone_bad_country" if bad_country else "phone_not_number",
                           value=raw) from None
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason in _REASONS:
        raise PhoneProblem(_REASONS[reason], value=raw)
    result = f"{number} ext. {extension.group(1)}" if extension else number
    if len(result) > PHONE_MAX:
        raise PhoneProblem("too_long", length=len(result), limit=PHONE_MAX)
    return result


def numbers_in(text: str) -> list[tuple[int, int]]:
    """Where libphonenumber finds possible numbers in free text (China unless a '+'
    code), as (start, end) spans, each with an extension written right after it: the
    grouping people type (`138 0013 8000`, `0931-5550-0100`, `+86 100 0000 0201`)."""
    spans = []
    for match in phonenumbers.PhoneNumberMatcher(text, PHONE_REGION,
                                                 leniency=phonenumbers.Leniency.POSSIBLE):
        extension = _EXTENSION_AFTER.match(text, match.end)
        spans.append((match.start, extension.end() if extension else match.end))
    return spans
