"""Names of the directory's entities as a data file compares them: a `Catalog` answers
"which entity does this name mean" in tiers (code, then full name, then short name,
then abbreviations, English names and aliases); the first tier with a match decides,
and two matches in that tier are an ambiguity. Names are compared `fold`ed: width and
case, not script (names that differ only by script are reported, `resolve.py`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any


def fold(value: str) -> str:
    """The form names are compared in: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


Tiers = tuple[tuple[str, ...], ...]
Why = tuple[str, dict[str, Any]]  # a problem key and its values


def _tiers(*levels: Iterable[str | None]) -> Tiers:
    return tuple(tuple(name for name in level if name) for level in levels)


def unit_tiers(
    code: str, name: str | None, short_name: str | None, abbreviation: str | None,
    english: str | None, aliases: Sequence[str] | None,
) -> Tiers:
    return _tiers([code], [name], [short_name], [abbreviation, english, *(aliases or [])])


def zone_tiers(
    code: str, name: str | None, short_name: str | None, english: str | None,
    aliases: Sequence[str] | None,
) -> Tiers:
    return _tiers([code], [name], [short_name], [english, *(aliases or [])])


def named_tiers(
    code: str, name: str | None, english: str | None, aliases: Sequence[str] | None
) -> Tiers:
    """Branches and mechanisms: code, name, then English name and aliases."""
    return _tiers([code], [name], [english, *(aliases or [])])


def agreement_tiers(code: str, title: str | None, short_title: str | None) -> Tiers:
    return _tiers([code], [title], [short_title])


class Catalog:
    """Names of one kind of entity, resolved tier by tier."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.entries: dict[str, Tiers] = {}
        self._maps: list[dict[str, set[str]]] | None = None
        self._cache: dict[str, tuple[str | None, Why | None]] = {}

    def put(self, code: str, tiers: Tiers) -> None:
        self.entries[code] = tiers
        self._maps = None
        self._cache.clear()

    def __contains__(self, code: object) -> bool:
        return code in self.entries

    def _build(self) -> list[dict[str, set[str]]]:
        if self._maps is None:
            depth = max((len(t) for t in self.entries.values()), default=0)
            maps: list[dict[str, set[str]]] = [{} for _ in range(depth)]
            for code, tiers in self.entries.items():
                for level, names in enumerate(tiers):
                    for name in names:
                        maps[level].setdefault(fold(name), set()).add(code)
            self._maps = maps
        return self._maps

    def resolve(self, value: Any) -> tuple[str | None, Why | None]:
        """(code, None) or (None, why not: a problem key and its values)."""
        text = str(value)
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        key = fold(text)
        result: tuple[str | None, Why | None] = (
            None, ("no_such", {"value": text, "what_kind": self.label}))
        for names in self._build():
            codes = names.get(key)
            if codes:
                if len(codes) == 1:
                    result = (next(iter(codes)), None)
                else:
                    result = (None, ("ambiguous", {"value": text, "what_kind": self.label,
                                                   "codes": ", ".join(sorted(codes))}))
                break
        self._cache[text] = result
        return result

    def preferred(self, code: str, candidates: Iterable[str | None]) -> str:
        """The first candidate name that resolves back to `code` (for exports), else the code."""
        for candidate in candidates:
            if candidate and self.resolve(candidate)[0] == code:
                return candidate
        return code
