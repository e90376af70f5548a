"""What a typed name means: units, branches and zones by every name, and a query parsed
against them (pure: the words come from the database, `storage.search.vocabulary`).

A query such as `川 刑警`, `四川刑侦`, `Sichuan CID` or `云南 禁毒 谁值班` is parsed
against a small `Vocabulary` of units, branches and zones into structured filters
plus leftover terms (names, phone digits, free text). `suggest` and `closest_names`
answer what a mistyped name could have meant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.normalize import ADMIN_SUFFIXES
from core.normalize import BRANCH_SUFFIXES
from core.normalize import POLICE_SUFFIXES
from core.normalize import fold_branch_suffix
from core.normalize import fold_unit_suffix
from core.normalize import fold_zone_suffix
from core.normalize import name_key
from core.normalize import normalize

__all__ = [
    "ParsedQuery",
    "Suggestion",
    "VocabItem",
    "Vocabulary",
    "closest_names",
    "parse_query",
    "suggest",
]

NOISE_WORDS = (
    "谁在值班",
    "谁值班",
    "值班室",
    "值班员",
    "值班",
    "在班",
    "联系方式",
    "联系电话",
    "联系人",
    "电话号码",
    "手机号码",
    "手机号",
    "电话",
    "手机",
    "号码",
    "联络员",
    "负责人",
    "我要找",
    "帮我找",
    "请问",
    "查询",
    "查找",
    "是谁",
    "谁是",
    "一下",
    "找",
    "的",
    "谁",
    "吗",
    "呢",
)
ASCII_NOISE = frozenset(
    {
        "who",
        "whos",
        "is",
        "on",
        "duty",
        "phone",
        "tel",
        "contact",
        "contacts",
        "number",
        "the",
        "of",
        "for",
        "in",
        "liaison",
    }
)


def _is_ascii_word(text: str) -> bool:
    return text.isascii() and any(c.isalnum() for c in text)


@dataclass(frozen=True)
class VocabItem:
    """A unit, branch or zone as the query parser knows it (raw names; normalised here)."""

    kind: str  # "unit" | "branch" | "zone"
    id: int
    label: str
    names: tuple[str, ...] = ()
    abbreviations: tuple[str, ...] = ()  # one character each (川 for 四川)
    members: frozenset[int] = frozenset()  # unit ids of a zone


@dataclass(frozen=True)
class Suggestion:
    kind: str
    id: int
    label: str
    score: float


@dataclass(frozen=True)
class ParsedQuery:
    text: str  # normalised query
    unit_ids: frozenset[int] = frozenset()
    branch_ids: frozenset[int] = frozenset()
    zone_ids: frozenset[int] = frozenset()
    terms: tuple[str, ...] = ()
    recognised: tuple[tuple[str, int, str], ...] = ()  # (kind, id, text as typed)

class Vocabulary:
    """Units, branches and zones by every name, folded name, English name, alias
    and abbreviation (small: built in memory from the database, cached there)."""

    def __init__(self, items: Iterable[VocabItem]) -> None:
        self.items: dict[tuple[str, int], VocabItem] = {}
        self.item_keys: dict[tuple[str, int], frozenset[str]] = {}
        self.keys: dict[str, set[tuple[str, int]]] = {}
        self.abbreviations: dict[str, set[int]] = {}
        self.zone_members: dict[int, frozenset[int]] = {}
        for item in items:
            self.items[(item.kind, item.id)] = item
            if item.kind == "zone":
                self.zone_members[item.id] = item.members
            item_keys: set[str] = set()
            for raw in (item.label, *item.names):
                item_keys |= self._variants(item.kind, name_key(raw))
            self.item_keys[(item.kind, item.id)] = frozenset(item_keys)
            for key in item_keys:
                if len(key) == 1 and item.kind == "unit":
                    self.abbreviations.setdefault(key, set()).add(item.id)
                elif len(key) > 1:
                    self.keys.setdefault(key, set()).add((item.kind, item.id))
            for raw in item.abbreviations:
                key = name_key(raw)
                if len(key) == 1 and item.kind == "unit":
                    self.abbreviations.setdefault(key, set()).add(item.id)
                elif key:
                    self.keys.setdefault(key, set()).add((item.kind, item.id))
        # character → (kind, id, key) of the keys containing it, for suggestions
        self.by_char: dict[str, set[tuple[str, int, str]]] = {}
        for (kind, ident), keys in self.item_keys.items():
            for key in keys:
                for char in set(key):
                    self.by_char.setdefault(char, set()).add((kind, ident, key))
        self.noise_chars = frozenset(w for w in NOISE_WORDS if len(w) == 1)
        for noise in NOISE_WORDS:
            if len(noise) > 1:
                self.keys.setdefault(noise, set())
        self.max_key = max((len(k) for k in self.keys), default=1)

    @staticmethod
    def _variants(kind: str, key: str) -> set[str]:
        if not key:
            return set()
        variants = {key}
        if " " in key and key.isascii():  # Xiong'an, Xiong-an, Xiong an, Xiongan alike
            variants.add(key.replace(" ", ""))
        if kind == "unit":
            variants.add(fold_unit_suffix(key))
        elif kind == "branch":
            variants.add(fold_branch_suffix(key))
        else:
            variants.add(fold_zone_suffix(key))
        return {v for v in variants if v}

    def __len__(self) -> int:
        return len(self.items)

    def named(self, kind: str, text: str) -> list[int]:
        """Ids of the units, branches or zones one of whose names (full, short, English,
        alias, abbreviation, in either script, any punctuation) is exactly `text`."""
        key = name_key(text)
        if not key:
            return []
        found = {ident for k, ident in self.keys.get(key, set()) if k == kind}
        found |= {ident for k, ident in self.keys.get(key.replace(" ", ""), set())
                  if k == kind and key.isascii()}
        if kind == "unit" and len(key) == 1:
            found |= self.abbreviations.get(key, set())
        return sorted(found)

    def units_of_zones(self, zone_ids: Iterable[int]) -> frozenset[int]:
        out: set[int] = set()
        for zone_id in zone_ids:
            out |= self.zone_members.get(zone_id, frozenset())
        return frozenset(out)

    def match_at(self, text: str, start: int) -> tuple[int, set[tuple[str, int]]] | None:
        """The longest key (or noise word, with no targets) at `start`: (end, targets)."""
        limit = min(len(text), start + self.max_key)
        for end in range(limit, start + 1, -1):
            key = text[start:end]
            targets = self.keys.get(key)
            if targets is None:
                continue
            if _is_ascii_word(key) and (
                (start > 0 and text[start - 1].isascii() and text[start - 1].isalnum())
                or (end < len(text) and text[end].isascii() and text[end].isalnum())
            ):
                continue
            return end, targets
        if start < len(text) and text[start] in self.noise_chars:
            return start + 1, set()
        return None


def _strip_noise(run: str) -> list[str]:
    for noise in NOISE_WORDS:
        run = run.replace(noise, " ")
    return [t for t in run.split() if t not in ASCII_NOISE]


def _consume_suffix(text: str, start: int, suffixes: Iterable[str]) -> int:
    for suffix in suffixes:
        if text.startswith(suffix, start):
            return start + len(suffix)
    return start


def parse_query(query: str, vocabulary: Vocabulary) -> ParsedQuery:
    """Units, branches and zones named in `query` (glued or spaced, in any order),
    and the leftover terms.

    A name is recognised at the start of the query, after a space, or right after
    another recognised name or noise word — never inside a leftover word, so a
    person called 王云南 stays a name. A one-character abbreviation (川) counts only
    as a word of its own or when a recognised name follows it (川刑警).
    """
    text = name_key(query)
    units: set[int] = set()
    branches: set[int] = set()
    zones: set[int] = set()
    recognised: list[tuple[str, int, str]] = []
    leftovers: list[str] = []
    buffer: list[str] = []
    boundary = True
    i = 0
    n = len(text)

    def record(targets: Iterable[tuple[str, int]], typed: str) -> None:
        for kind, ident in sorted(targets):
            {"unit": units, "branch": branches, "zone": zones}[kind].add(ident)
            recognised.append((kind, ident, typed))

    def flush() -> None:
        if buffer:
            leftovers.append("".join(buffer))
            buffer.clear()

    while i < n:
        char = text[i]
        if char == " ":
            flush()
            boundary = True
            i += 1
            continue
        if boundary:
            found = vocabulary.match_at(text, i)
            if found is not None:
                end, targets = found
                record(targets, text[i:end])
                kinds = {k for k, _ in targets}
                if "unit" in kinds:
                    end = _consume_suffix(text, end, POLICE_SUFFIXES + ADMIN_SUFFIXES)
                    end = _consume_suffix(text, end, POLICE_SUFFIXES)
                if "branch" in kinds:
                    end = _consume_suffix(text, end, BRANCH_SUFFIXES)
                i = end
                continue
            abbreviated = vocabulary.abbreviations.get(char)
            if abbreviated and (
                i + 1 == n or text[i + 1] == " " or vocabulary.match_at(text, i + 1) is not None
            ):
                record((("unit", u) for u in abbreviated), char)
                i += 1
                continue
        buffer.append(char)
        boundary = False
        i += 1
    flush()
    terms: list[str] = []
    for run in leftovers:
        terms.extend(_strip_noise(run))
    return ParsedQuery(
        text=text,
        unit_ids=frozenset(units),
        branch_ids=frozenset(branches),
        zone_ids=frozenset(zones),
        terms=tuple(dict.fromkeys(terms)),
        recognised=tuple(recognised),
    )


# --------------------------------------------------------------------------- suggestions


def _edit_distance(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _similarity(term: str, key: str) -> float:
    """1 − edit distance / longer length (at least 0.6 for a prefix), 0 when the two
    share no character or differ too much in length to reach 0.34."""
    if not term or not key:
        return 0.0
    longest = max(len(term), len(key))
    if abs(len(term) - len(key)) > 0.66 * longest or not set(term) & set(key):
        return 0.0
    score = 1.0 - _edit_distance(term, key) / longest
    if key.startswith(term) or term.startswith(key):
        score = max(score, 0.6)
    return score


def suggest(
    query: str, vocabulary: Vocabulary, *, limit: int = 5, threshold: float = 0.34
) -> list[Suggestion]:
    """Nearest units, branches and zones to the words of a query that found nothing
    (edit distance over the names, needing a shared character for Chinese)."""
    parsed = parse_query(query, vocabulary)
    words = list(parsed.terms) or [w for w in parsed.text.split() if w]
    if not words:
        return []
    best: dict[tuple[str, int], float] = {}
    for word in words:
        candidates: set[tuple[str, int, str]] = set()
        for char in set(word):
            candidates |= vocabulary.by_char.get(char, set())
        for kind, ident, key in candidates:
            score = _similarity(word, key)
            if score >= threshold and score > best.get((kind, ident), 0.0):
                best[(kind, ident)] = score
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0][0] != "unit", kv[0][1]))
    return [
        Suggestion(kind, ident, vocabulary.items[(kind, ident)].label, round(score, 3))
        for (kind, ident), score in ranked[:limit]
    ]


def closest_names(name: str, names: Iterable[str], *, limit: int = 3,
                  threshold: float = 0.34) -> list[str]:
    """The names most like `name` (edit distance over normalised names, so either script),
    best first: what a person who mistyped a name could have meant."""
    wanted = normalize(name)
    scored: dict[str, float] = {}
    for candidate in dict.fromkeys(names):
        score = _similarity(wanted, normalize(candidate))
        if score >= threshold:
            scored[candidate] = score
    return sorted(scored, key=lambda c: -scored[c])[:limit]
