"""The index tokens, built here so that both backends and the queries agree (pure).

Runs of non-ASCII letters (Chinese) become overlapping two-character tokens, runs of
ASCII letters and digits overlapping three-character tokens; a run shorter than that
is one token; punctuation and field boundaries become `FILLER`, so a phrase never
matches across them. `term_pattern` is how one normalised query term is looked up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "FILLER",
    "TermPattern",
    "char_tokens",
    "index_tokens",
    "stream_tokens",
    "term_pattern",
]

# A token the tokeniser can never produce (ASCII runs give tokens of at most three
# characters), placed at punctuation and between fields.
FILLER = "xxxx"

# ASCII letter/digit runs, other letter/digit runs (Chinese), and separators.
_SEGMENTS = re.compile(r"([a-z0-9]+)|([^\W_a-z0-9]+)|[\W_]+")


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
