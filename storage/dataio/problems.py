"""Problems found in a data file, each with its place: ``liaisons[12].unit`` or a line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data file.

    `path` is ``section[index].field`` (``agreements[0].clauses[3].text``) for problems
    in the content, empty for problems with the file as a whole; `line` and `column`
    (1-based) are set for YAML syntax errors.
    """

    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is not None:
            where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
            return f"{where}: {self.message}"
        return f"{self.path}: {self.message}" if self.path else self.message


class Problems:
    """A collector; `add` never raises, so validation can report everything at once."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(Problem(path, message))

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)
