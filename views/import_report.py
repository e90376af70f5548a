"""The import report as people read it: each problem of a data file with its place in
words (the file, the line, the record and the field) and its message from the `import`
catalogue (i18n/locales/*/import.yaml), in the reader's language; then what an import
did, section by section.

`problem_text` is the developer's form (``liaisons[12].unit: no unit named
四川省公安厅X``, English, places as paths); `render_problem` the coordinator's.
"""

from __future__ import annotations

from collections.abc import Sequence

from i18n import t
from storage.dataio import ImportReport
from storage.dataio.problems import KIND_SUFFIX
from storage.dataio.problems import REF_SUFFIX
from storage.dataio.problems import Problem
from storage.dataio.problems import segments

SHOWN_PROBLEMS = 50  # a report lists this many problems, then counts the rest


def problem_message(problem: Problem, language: str, *, for_people: bool = True) -> str:
    """The problem's message; `for_people` names the places it cites by their line (or
    in words), else as paths."""
    values = dict(problem.values)
    for name, value in problem.values.items():
        if name.endswith(KIND_SUFFIX):
            values[name] = t(language, f"import.kinds.{value}")
        elif name.endswith(REF_SUFFIX):
            line = problem.ref_lines.get(name)
            if for_people:
                values[name] = (t(language, "import.where.line", line=line) if line
                                else describe_path(language, str(value)))
    return t(language, f"import.problems.{problem.key}", **values)


def problem_text(problem: Problem) -> str:
    """The English message with places as paths (for logs and developers)."""
    message = problem_message(problem, "en", for_people=False)
    if problem.line is not None and not problem.path:
        where = f"line {problem.line}" + (f", column {problem.column}" if problem.column else "")
        return f"{where}: {message}"
    return f"{problem.path}: {message}" if problem.path else message


def render_problem(problem: Problem, language: str, source: str | None = None) -> str:
    """The file, the line, the record and field in words, then the message."""
    place = []
    if source:
        place.append(t(language, "import.where.file", file=source))
    if problem.line is not None:
        place.append(t(language, "import.where.line", line=problem.line))
    head = t(language, "import.where.join").join(place)
    what = describe_path(language, problem.path)
    message = problem_message(problem, language)
    if head and what:
        return t(language, "import.where.full", place=head, what=what, message=message)
    if head or what:
        return t(language, "import.where.short", place=head or what, message=message)
    return message


def render_problems(problems: Sequence[Problem], language: str, source: str | None = None, *,
                    limit: int = SHOWN_PROBLEMS) -> list[str]:
    """The first `limit` problems, one line each, then how many more there are: a file of
    a million bad records is told in fifty-one lines, not a million."""
    lines = [render_problem(problem, language, source) for problem in problems[:limit]]
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


def import_summary(report: ImportReport, language: str = "en") -> str:
    """What happened, for people: the problems (with their lines), or the counts."""
    name = report.source or t(language, "import.report.the_document")
    if report.problems:
        lines = [t(language, "import.report.refused", file=name,
                   count=f"{len(report.problems):,}")]
        lines += [f"  {line}" for line in render_problems(report.problems, language)]
        return "\n".join(lines)
    lines = [t(language, "import.report.checked" if report.dry_run else "import.report.done",
               file=name, seconds=f"{report.seconds:.2f}", created=report.total("created"),
               updated=report.total("updated"), unchanged=report.total("unchanged"))]
    for section, c in report.counts.items():
        if c.total or c.removed:
            removed = (t(language, "import.report.removed", count=c.removed)
                       if c.removed else "")
            lines.append(t(language, "import.report.section", section=f"{section:<16}",
                           created=f"{c.created:>6}", updated=f"{c.updated:>6}",
                           unchanged=f"{c.unchanged:>6}", removed=removed))
    return "\n".join(lines)
