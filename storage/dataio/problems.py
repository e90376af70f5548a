"""Problems found in a data file, each with its place: ``liaisons[12].unit`` and a line.

A problem is a message key of the `import` catalogue (i18n/locales/*/import.yaml) with
its values, so the same problem reads in Chinese for a coordinator and in English for a
developer. `str(problem)` is the developer's form (``liaisons[12].unit: no unit named
四川省公安厅X``); `problem.render(language, source)` is the coordinator's: the file, the
line, the record and the field in words, in the desk's language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from i18n import t

_SEGMENT_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_REF_SUFFIX = "_path"  # a value naming another place in the file (rendered as its line)
_KIND_SUFFIX = "_kind"  # a value naming a kind of thing (rendered from `import.kinds`)


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

    def message_in(self, language: str, *, for_people: bool = True) -> str:
        values = dict(self.values)
        for name, value in self.values.items():
            if name.endswith(_KIND_SUFFIX):
                values[name] = t(language, f"import.kinds.{value}")
            elif name.endswith(_REF_SUFFIX):
                line = self.ref_lines.get(name)
                if for_people:
                    values[name] = (t(language, "import.where.line", line=line) if line
                                    else describe_path(language, str(value)))
        return t(language, f"import.problems.{self.key}", **values)

    @property
    def message(self) -> str:
        """The English message with places as paths (for logs and developers)."""
        return self.message_in("en", for_people=False)

    def __str__(self) -> str:
        if self.line is not None and not self.path:
            where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
            return f"{where}: {self.message}"
        return f"{self.path}: {self.message}" if self.path else self.message

    def render(self, language: str, source: str | None = None) -> str:
        """The file, the line, the record and field in words, then the message."""
        place = []
        if source:
            place.append(t(language, "import.where.file", file=source))
        if self.line is not None:
            place.append(t(language, "import.where.line", line=self.line))
        head = t(language, "import.where.join").join(place)
        what = describe_path(language, self.path)
        message = self.message_in(language)
        if head and what:
            return t(language, "import.where.full", place=head, what=what, message=message)
        if head or what:
            return t(language, "import.where.short", place=head or what, message=message)
        return message


SHOWN_PROBLEMS = 50  # a report lists this many problems, then counts the rest


def render_problems(problems: list[Problem], language: str, source: str | None = None, *,
                    limit: int = SHOWN_PROBLEMS) -> list[str]:
    """The first `limit` problems, one line each, then how many more there are: a file of
    a million bad records is told in fifty-one lines, not a million."""
    lines = [problem.render(language, source) for problem in problems[:limit]]
    if len(problems) > limit:
        lines.append(t(language, "import.report.more", count=f"{len(problems) - limit:,}"))
    return lines


def describe_path(language: str, path: str) -> str:
    """``liaisons[12].unit`` → 联络员第 13 条，字段 unit (records counted from 1)."""
    parts = segments(path)
    if not parts:
        return ""
    words: list[str] = []
    section = parts[0]
    rest = parts[1:]
    label = t(language, f"import.sections.{section}")
    if label == f"import.sections.{section}":  # not a section (an unknown one)
        label = str(section)
    if rest and isinstance(rest[0], int):
        words.append(t(language, "import.where.record", section=label, number=rest[0] + 1))
        rest = rest[1:]
    else:
        words.append(label)
    if rest:
        name = ""
        for part in rest:
            name += f" #{part + 1}" if isinstance(part, int) else (f".{part}" if name else part)
        words.append(t(language, "import.where.field", field=name))
    return t(language, "import.where.join").join(words)


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
                if name.endswith(_REF_SUFFIX)
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
