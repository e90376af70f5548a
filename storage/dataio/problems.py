"""Problems found in a data file, each with its place: ``liaisons[12].unit`` and a line.

A problem is a message key of the `import` catalogue (i18n/locales/*/import.yaml) with
its values, so the same problem reads in Chinese for a coordinator and in English for a
developer; the words are chosen where the report is shown (`views.import_report`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any

_SEGMENT_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
REF_SUFFIX = "_path"  # a value naming another place in the file (rendered as its line)
KIND_SUFFIX = "_kind"  # a value naming a kind of thing (rendered from `import.kinds`)


def segments(path: str) -> list[str | int]:
    """``agreements[1].clauses[2]`` → ['agreements', 1, 'clauses', 2]."""
    return [int(index) if index else name
            for name, index in _SEGMENT_RE.findall(path)]


@dataclass(frozen=True, eq=True)
class Problem:
    """One thing wrong with a data file.

    `path` is ``section[index].field`` (``agreements[0].clauses[3].text``) for problems
    in the content, empty for problems with the file as a whole; `key` names the message
    in the `import.problems` catalogue and `values` fill it. `line` and `column`
    (1-based) are where the file says it (`column` for YAML syntax errors only);
    `ref_lines` are the lines of the places that values ending in ``_path`` name.
    """

    path: str
    key: str
    values: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None
    column: int | None = None
    ref_lines: Mapping[str, int] = field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]  # values is a dict


Positions = dict[int, Any]
"""Lines of a loaded document's containers, by `id()`: for a mapping (its line, {key:
line of the key}), for a list [line of each item] (filled by `yamlio.load_yaml`)."""


def locate(document: Any, positions: Positions, path: str) -> int | None:
    """The line of the deepest part of `path` the document has (the field, else its
    record, else its section)."""
    line = None
    node = document
    for part in segments(path):
        where = positions.get(id(node))
        if where is None:
            break
        if isinstance(node, Mapping) and isinstance(part, str) and part in node:
            line = where[1].get(part, where[0])
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            line = where[part]
            node = node[part]
        else:
            break
    return line


def with_lines(problems: list[Problem], document: Any, positions: Positions) -> list[Problem]:
    """The problems with the lines of their places (and of the places they cite)."""
    located = []
    for problem in problems:
        if problem.line is not None or not problem.path:
            located.append(problem)
            continue
        refs = {name: line for name, value in problem.values.items()
                if name.endswith(REF_SUFFIX)
                and (line := locate(document, positions, str(value))) is not None}
        located.append(replace(problem, line=locate(document, positions, problem.path),
                               ref_lines=refs))
    return located


class Problems:
    """A collector; `add` never raises, so validation can report everything at once."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, key: str, /, **values: Any) -> None:
        self.items.append(Problem(path, key, values))

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)
