"""Text normalisation and query parsing for search (pure: no database, no I/O).

Stored text and queries go through the same `normalize`: NFKC (full-width →
half-width, ideographic space → space), OpenCC `t2s` (Traditional → Simplified),
case folding and collapsed white space. Units fold their suffixes (四川省公安厅 →
四川), zones theirs (西北警务协作区 → 西北), and a query such as `川 刑警`,
`四川刑侦`, `Sichuan CID` or `云南 禁毒 谁值班` is parsed against a small
`Vocabulary` of units, branches and zones into structured filters plus leftover
terms (names, phone digits, free text).

The index tokens are built here too, so that both backends and the queries agree:
runs of non-ASCII letters (Chinese) become overlapping two-character tokens, runs
of ASCII letters and digits overlapping three-character tokens; a run shorter than
that is one token; punctuation and field boundaries become `FILLER`, so a phrase
never matches across them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import opencc

__all__ = [
    "FILLER",
    "ParsedQuery",
    "Suggestion",
    "TermPattern",
    "VocabItem",
    "Vocabulary",
    "char_tokens",
    "closest_names",
    "fold_branch_suffix",
    "fold_unit_suffix",
    "fold_zone_suffix",
    "in_script",
    "index_tokens",
    "name_key",
    "normalize",
    "normalize_many",
    "normalize_phone",
    "normalize_with_map",
    "parse_query",
    "query_terms",
    "snippet",
    "stream_tokens",
    "suggest",
    "term_pattern",
]

# A token the tokeniser can never produce (ASCII runs give tokens of at most three
# characters), placed at punctuation and between fields.
FILLER = "xxxx"

_SPACES = re.compile(r"\s+")
# ASCII letter/digit runs, other letter/digit runs (Chinese), and separators.
_SEGMENTS = re.compile(r"([a-z0-9]+)|([^\W_a-z0-9]+)|[\W_]+")
_DIGIT_GROUPS = re.compile(r"(?<=\d)[ \-‐‑–—.·/()]+(?=\d)")
_NOT_WORD = re.compile(r"[\W_]+")
_NOT_DIGIT = re.compile(r"[^0-9]+")


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


@lru_cache(maxsize=2)
def _converter(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


# The script a reader of each language expects names in (no entry: as written).
_SCRIPT_OF_LANGUAGE = {"zh-Hans": "t2s", "zh-Hant": "s2t"}


@lru_cache(maxsize=8192)
def in_script(text: str, language: str) -> str:
    """A directory name (unit, branch, zone) in the script of `language`, whatever script
    the data was written in: character by character (`s2t`, `t2s`), as proper names
    want, without the phrase rewriting of regional variants."""
    config = _SCRIPT_OF_LANGUAGE.get(language)
    if not config or not text:
        return text
    return str(_converter(config).convert(text))


def _prefold(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def normalize(text: str | None) -> str:
    """NFKC, Traditional → Simplified, case folding, single spaces, stripped."""
    if not text:
        return ""
    folded = _t2s().convert(_prefold(text)).casefold()
    return _SPACES.sub(" ", folded).strip()


def normalize_many(texts: Sequence[str | None]) -> list[str]:
    """`normalize` for many texts at once (one OpenCC call: ten times faster)."""
    prefolded = [_prefold(t) if t else "" for t in texts]
    converted = _t2s().convert("\n".join(prefolded)).split("\n")
    if len(converted) != len(prefolded):  # never seen; stay correct regardless
        return [normalize(t) for t in texts]
    return [_SPACES.sub(" ", c.casefold()).strip() for c in converted]


def normalize_with_map(text: str) -> tuple[str, list[int]]:
    """Normalise character by character, returning for each output character the
    index of the original character it came from (for snippets of the original).

    Almost always equal to `normalize(text)`; when OpenCC's phrase conversion
    would change the length, characters are converted one by one instead.
    """
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        for piece in unicodedata.normalize("NFKC", char):
            chars.append(piece)
            origin.append(index)
    joined = "".join(chars)
    converted = _t2s().convert(joined)
    if len(converted) != len(joined):
        converted = "".join(
            c if len(c) == 1 else o for o, c in ((o, _t2s().convert(o)) for o in joined)
        )
    out: list[str] = []
    positions: list[int] = []
    for char, index in zip(converted, origin, strict=True):
        for piece in char.casefold():
            if piece.isspace():
                if not out or out[-1] == " ":
                    continue
                piece = " "
            out.append(piece)
            positions.append(index)
    while out and out[-1] == " ":
        out.pop()
        positions.pop()
    return "".join(out), positions


def normalize_phone(phone: str | None) -> str:
    """Digits only (full-width digits included): `+86 138-0000-1234` → `8613800001234`."""
    if not phone:
        return ""
    return _NOT_DIGIT.sub("", unicodedata.normalize("NFKC", phone))


def snippet(original: str, needle: str, *, width: int = 40, others: Iterable[str] = ()) -> str:
    """About `width` characters of `original` around the first match of the
    normalised `needle` (or else of one of `others`); the start of the text when
    none occurs. The match is found in the normalised text and mapped back, so the
    snippet shows the original characters (Traditional, full-width)."""
    text = original.strip()
    if not text:
        return ""
    folded = _t2s().convert(unicodedata.normalize("NFKC", text)).casefold()
    positions: list[int] | None = None
    if len(folded) != len(text):  # rare: NFKC or case folding changed the length
        folded, positions = normalize_with_map(text)
    start = 0
    for candidate in (needle, *others):
        found = folded.find(candidate) if candidate else -1
        if found < 0:
            continue
        first, last = found, found + len(candidate) - 1
        if positions is not None:
            first, last = positions[first], positions[last]
        lead = max(0, (width - (last + 1 - first)) // 3)
        start = max(0, min(first - lead, len(text) - width))
        break
    end = min(len(text), start + width)
    piece = _SPACES.sub(" ", text[start:end]).strip()
    return ("…" if start > 0 else "") + piece + ("…" if end < len(text) else "")


# --------------------------------------------------------------------------- suffixes

POLICE_SUFFIXES = (
    "公安分局",
    "公安厅",
    "公安局",
    "公安处",
    "警察局",
    "警务处",
)
ADMIN_SUFFIXES = (
    "维吾尔自治区",
    "壮族自治区",
    "回族自治区",
    "特别行政区",
    "自治区",
    "自治州",
    "省",
    "市",
    "县",
    "区",
)
BRANCH_SUFFIXES = ("总队", "支队", "大队", "中队", "部门", "警种", "处", "科")
ZONE_SUFFIXES = (
    "区域警务一体化",
    "地区警务合作",
    "警务协作区",
    "区域警务合作",
    "警务一体化",
    "警务合作",
    "警务协作",
    "协作区",
    "地区",
)


def _strip_suffix(text: str, suffixes: Iterable[str], keep: int = 2) -> str:
    for suffix in suffixes:
        if text.endswith(suffix) and len(text) - len(suffix) >= keep:
            return text[: -len(suffix)]
    return text


def fold_unit_suffix(name: str) -> str:
    """四川省公安厅 → 四川, 新疆维吾尔自治区公安厅 → 新疆, 成都市 → 成都 (normalised input)."""
    folded = _strip_suffix(name, POLICE_SUFFIXES)
    return _strip_suffix(folded, ADMIN_SUFFIXES)


def fold_branch_suffix(name: str) -> str:
    return _strip_suffix(name, BRANCH_SUFFIXES)


def fold_zone_suffix(name: str) -> str:
    return _strip_suffix(name, ZONE_SUFFIXES)


# --------------------------------------------------------------------------- tokens


def _segments(text: str) -> list[tuple[str, str]]:
    """(kind, run) with kind "a" (ASCII letters/digits), "w" (other letters), "s" (separator)."""
    out: list[tuple[str, str]] = []
    for match in _SEGMENTS.finditer(text):
        if match.group(1):
            out.append(("a", match.group(1)))
        elif match.group(2):
            out.append(("w", match.group(2)))
        else:
            out.append(("s", match.group(0)))
    return out


def _run_tokens(kind: str, run: str) -> list[str]:
    size = 3 if kind == "a" else 2
    if len(run) <= size:
        return [run]
    return [run[i : i + size] for i in range(len(run) - size + 1)]


def stream_tokens(fields: Iterable[str]) -> list[str]:
    """The positional token stream of normalised fields, with `FILLER` at
    punctuation and between fields (what the SQLite phrase index holds)."""
    return index_tokens(fields)[0]


def char_tokens(fields: Iterable[str]) -> list[str]:
    """Distinct non-ASCII letters of normalised fields (single-character queries)."""
    return index_tokens(fields)[1]


def index_tokens(fields: Iterable[str]) -> tuple[list[str], list[str]]:
    """(`stream_tokens`, `char_tokens`) in one pass (the index build's hot loop)."""
    out: list[str] = []
    chars: set[str] = set()
    append, extend = out.append, out.extend
    filler = False  # a separator or field boundary since the last token
    for ascii_run, wide_run in _SEGMENTS.findall("\n".join(f for f in fields if f)):
        if ascii_run:
            run = ascii_run
            if filler and out:
                append(FILLER)
            if len(run) <= 3:
                append(run)
            else:
                extend(map("".join, zip(run, run[1:], run[2:], strict=False)))
        elif wide_run:
            run = wide_run
            if filler and out:
                append(FILLER)
            chars.update(run)
            if len(run) <= 2:
                append(run)
            else:
                extend(map(str.__add__, run[:-1], run[1:]))
        else:
            filler = True
            continue
        filler = False
    return out, sorted(chars)


@dataclass(frozen=True)
class TermPattern:
    """How one normalised query term is looked up in the token index.

    `phrase`: tokens that occur consecutively wherever the term occurs;
    `chars`: single characters that occur too; `exact`: whether phrase + chars
    imply that the term occurs (otherwise a confirming substring check is needed).
    """

    term: str
    phrase: tuple[str, ...]
    chars: tuple[str, ...]
    exact: bool

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every token the stored token set must contain (PostgreSQL `@>`)."""
        return tuple(dict.fromkeys(self.phrase + self.chars))

    @property
    def single_token(self) -> bool:
        """The term is one token: containment alone proves it occurs."""
        return self.exact and len(self.phrase) + len(self.chars) == 1


def term_pattern(term: str) -> TermPattern | None:
    """The lookup pattern of a normalised term (None when it has no letters or digits)."""
    runs = [(k, r) for k, r in _segments(term) if k != "s"]
    if not runs:
        return None
    if len(runs) == 1:
        kind, run = runs[0]
        if kind == "w" and len(run) == 1:
            return TermPattern(term, (), (run,), True)
        return TermPattern(term, tuple(_run_tokens(kind, run)), (), True)
    # Several runs glued together (张伟138): the edge runs may be cut out of longer
    # stored runs, so a single character or a short ASCII run at an edge cannot be
    # a token of the stored stream; look those up by character or not at all.
    chars: list[str] = []
    exact = True
    for edge in (0, -1):
        kind, run = runs[edge]
        if (kind == "w" and len(run) == 1) or (kind == "a" and len(run) < 3):
            exact = False
            if kind == "w":
                chars.append(run)
            runs[edge] = ("", "")
    phrase: list[str] = []
    for kind, run in runs:
        if run:
            phrase.extend(_run_tokens(kind, run))
    return TermPattern(term, tuple(phrase), tuple(dict.fromkeys(chars)), exact)


def query_terms(text: str) -> list[str]:
    """Free-text terms of a normalised query: split at white space and punctuation,
    digit groups of phone numbers joined (`138 0000 1234` → `13800001234`)."""
    joined = _DIGIT_GROUPS.sub("", text)
    return [t for t in _NOT_WORD.sub(" ", joined).split() if t]


def name_key(text: str | None) -> str:
    """A name as the query parser sees it: normalised, punctuation as single spaces
    (`Xi'an` → `xi an`, `anti-drug` → `anti drug`)."""
    return _NOT_WORD.sub(" ", _DIGIT_GROUPS.sub("", normalize(text))).strip()


# --------------------------------------------------------------------------- vocabulary

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

    @property
    def is_empty(self) -> bool:
        return not (self.unit_ids or self.branch_ids or self.zone_ids or self.terms)


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
    text = normalize(query)
    text = _NOT_WORD.sub(" ", _DIGIT_GROUPS.sub("", text)).strip()
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
