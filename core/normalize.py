"""Text normalisation (pure: no database, no I/O).

Stored text and queries go through the same `normalize`: NFKC (full-width →
half-width, ideographic space → space), OpenCC `t2s` (Traditional → Simplified),
case folding and collapsed white space. Units fold their suffixes (四川省公安厅 →
四川), zones theirs (西北警务协作区 → 西北); `name_key` is a name as the query
parser (`core.vocabulary`) compares it, `query_terms` the free-text terms of a query,
`snippet` a piece of the original text around a match, `in_script` a directory name
in the reader's script.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import lru_cache
from typing import TypeVar

import opencc

T = TypeVar("T")

__all__ = [
    "ADMIN_SUFFIXES",
    "BRANCH_SUFFIXES",
    "POLICE_SUFFIXES",
    "ZONE_SUFFIXES",
    "fold_branch_suffix",
    "fold_unit_suffix",
    "fold_zone_suffix",
    "in_script",
    "name_key",
    "normalize",
    "normalize_many",
    "normalize_phone",
    "normalize_with_map",
    "query_terms",
    "snippet",
    "word_table",
]

_SPACES = re.compile(r"\s+")
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


def word_table(meanings: Mapping[T, str]) -> dict[str, T]:
    """What each typed word means, from a table that gives each meaning its words (space
    separated, in every script people type), one meaning a line."""
    return {word: meaning for meaning, words in meanings.items() for word in words.split()}


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


def query_terms(text: str) -> list[str]:
    """Free-text terms of a normalised query: split at white space and punctuation,
    digit groups of phone numbers joined (`138 0000 1234` → `13800001234`)."""
    joined = _DIGIT_GROUPS.sub("", text)
    return [t for t in _NOT_WORD.sub(" ", joined).split() if t]


def name_key(text: str | None) -> str:
    """A name as the query parser sees it: normalised, punctuation as single spaces
    (`Xi'an` → `xi an`, `anti-drug` → `anti drug`)."""
    return _NOT_WORD.sub(" ", _DIGIT_GROUPS.sub("", normalize(text))).strip()
