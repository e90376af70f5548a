"""Import and export of the YAML data file (format: docs/data-format.md).

    report = await import_file(db, "data/sample.yaml")   # validate, then one transaction
    if report.problems: ...                              # nothing was changed
    print(views.import_report.import_summary(report))    # in words, in a language
    await export_file(db, "backup.yaml")

`validate` checks a whole document and reports every problem with its place
(``liaisons[12].unit: no unit named 四川省公安厅X``); a file with any problem changes
nothing. Entities are matched by identity (codes; users by telegram_id; liaisons by
unit, branch and name; duty rooms by chat_id, else unit and title; rosters by duty
room; chair rotations by zone; meetings by code, else title and start), so
importing the same file twice changes nothing the second time.

Users and liaisons are written with bulk INSERT/UPDATE statements, which fire no
per-object ORM events. When an import changed anything, the search index is
brought up to date in the same transaction (`storage.search.index.refresh_search_index`:
the liaisons and agreements that changed, or everything after a big import); other
derived data can register an `after_import` hook, run there too.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import DEFAULT_ZONE
from storage.access import audit
from storage.dataio.apply import COUNTED
from storage.dataio.apply import SectionCounts
from storage.dataio.apply import apply_plan
from storage.dataio.export import export_document
from storage.dataio.problems import Positions
from storage.dataio.problems import Problem
from storage.dataio.problems import Problems
from storage.dataio.problems import with_lines
from storage.dataio.resolve import Existing
from storage.dataio.resolve import Plan
from storage.dataio.resolve import resolve
from storage.dataio.schema import SECTIONS
from storage.dataio.schema import check_shape
from storage.dataio.state import existing_from
from storage.dataio.state import load_state
from storage.dataio.yamlio import YamlError
from storage.dataio.yamlio import dump_yaml
from storage.dataio.yamlio import load_yaml
from storage.db import Database
from storage.search.index import refresh_search_index

__all__ = [
    "DEFAULT_ZONE",
    "MAX_FILE_BYTES",
    "SECTIONS",
    "ExportReport",
    "ImportReport",
    "Problem",
    "SectionCounts",
    "after_import",
    "check_file",
    "dump_document",
    "export_document",
    "export_file",
    "import_document",
    "import_file",
    "parse_document",
    "validate",
    "validate_in",
]


# --------------------------------------------------------------------------- reports


@dataclass
class ImportReport:
    """What an import did (counts per section) or why it did nothing (problems); told
    in words by `views.import_report.import_summary`."""

    source: str | None = None
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, SectionCounts] = field(default_factory=dict)
    dry_run: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def total(self, what: str) -> int:
        return sum(getattr(c, what) for c in self.counts.values())

    @property
    def changed(self) -> bool:
        return any(c.created or c.updated or c.removed for c in self.counts.values())


@dataclass
class ExportReport:
    path: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        parts = ", ".join(f"{n} {section}" for section, n in self.counts.items() if n)
        return f"Exported to {self.path}: {parts or 'nothing'}."


# --------------------------------------------------------------------------- hooks

ImportHook = Callable[[AsyncSession, "ImportReport"], Awaitable[None]]
_AFTER_IMPORT: list[ImportHook] = []


def after_import(hook: ImportHook) -> ImportHook:
    """Register `async def hook(session, report)`, run in the import's transaction after a
    successful import (also when nothing changed: check `report.changed`). Usable as a
    decorator; registering the same hook twice has no effect."""
    if hook not in _AFTER_IMPORT:
        _AFTER_IMPORT.append(hook)
    return hook


# --------------------------------------------------------------------------- validation


MAX_FILE_BYTES = 32 * 1024 * 1024
"""The largest data file an import reads. The whole sample desk is 50 kB and a national
directory a few MB; PyYAML holds a file about twenty times over while it loads."""


def too_big(size: int) -> Problem:
    return Problem("", "too_big", {"size": f"{size / 2**20:,.1f}",
                                   "limit": MAX_FILE_BYTES // 2**20})


def parse_document(text: str, positions: Positions | None = None) -> tuple[Any, list[Problem]]:
    """YAML text to a document; a syntax error is a problem with its line and column.
    With `positions`, the lines of the document's parts are recorded there (for
    `with_lines`). Text over MAX_FILE_BYTES, or nested deeper than a data file ever is,
    is refused before it is parsed."""
    if len(text) > MAX_FILE_BYTES or len(text.encode()) > MAX_FILE_BYTES:
        return None, [too_big(len(text.encode()))]
    try:
        return load_yaml(text, positions), []
    except YamlError as exc:
        return None, [Problem("", exc.key, exc.values, exc.line, exc.column)]


_PATH_RE = re.compile(r"^([A-Za-z_]+)(?:\[(\d+)\])?")


def _file_order(problem: Problem) -> tuple[int, int]:
    """Problems sorted by section, then record (stable within a record)."""
    match = _PATH_RE.match(problem.path)
    if not match or match.group(1) not in SECTIONS:
        return (-1, 0)
    return (SECTIONS.index(match.group(1)), int(match.group(2) or -1))


def _plan(document: Any, existing: Existing) -> tuple[Plan | None, list[Problem]]:
    problems = Problems()
    sections = check_shape(document, problems)
    plan = resolve(sections, existing, problems)
    return (None if problems else plan), sorted(problems.items, key=_file_order)


def validate(document: Mapping[str, Any] | str, existing: Existing | None = None) -> list[Problem]:
    """Every problem in a document (or YAML text), checked against the file alone.

    References must then resolve within the file; `validate_in` also accepts rows
    already in the database.
    """
    if isinstance(document, str):
        document, problems = parse_document(document)
        if problems:
            return problems
    return _plan(document, existing or Existing())[1]


async def validate_in(session: AsyncSession, document: Mapping[str, Any] | str) -> list[Problem]:
    """Every problem in a document, with references resolved in the file or the database."""
    if isinstance(document, str):
        document, problems = parse_document(document)
        if problems:
            return problems
    return _plan(document, existing_from(await load_state(session)))[1]


# --------------------------------------------------------------------------- import


async def import_document(
    session: AsyncSession,
    document: Mapping[str, Any] | str,
    *,
    source: str | None = None,
    actor_telegram_id: int | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Validate, then upsert everything in the caller's unit of work (`now` is recorded
    as the creation time of new rosters, chair rotations and meetings: the scheduler
    reports nothing due before it as missed).

    With problems nothing is added to the session. The caller commits (or rolls back).
    """
    started = time.perf_counter()
    report = ImportReport(source=source)
    positions: Positions = {}
    if isinstance(document, str):
        document, report.problems = parse_document(document, positions)
        if report.problems:
            return report
    state = await load_state(session)
    plan, report.problems = _plan(document, existing_from(state))
    if plan is None:
        if isinstance(document, Mapping) and positions:
            report.problems = with_lines(report.problems, document, positions)
        return report
    applier = await apply_plan(session, state, plan, now)
    report.counts = {name: applier.counts[name] for name in COUNTED}
    if report.changed:
        scope = await applier.search_scope()
        await refresh_search_index(session, **(scope or {}))
    for hook in list(_AFTER_IMPORT):
        await hook(session, report)
    report.seconds = time.perf_counter() - started
    await audit(session, "data.import", actor_telegram_id=actor_telegram_id,
                subject_type="data_file", subject_id=(source or "")[-60:] or None,
                source=source,
                counts={name: vars(c).copy() for name, c in report.counts.items()
                        if c.total or c.removed})
    await session.flush()
    return report


class _TooBig(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _read_text(path: Path) -> str:
    """The file as text, read no further than MAX_FILE_BYTES (a device or a pipe says no
    size up front)."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise _TooBig(size)
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise _TooBig(max(size, len(data)))
    return data.decode("utf-8")


async def _read(path: str | Path) -> tuple[Any, Positions, list[Problem]]:
    """A file's document and the lines of its parts, or why it cannot be read."""
    positions: Positions = {}
    try:
        text = await asyncio.to_thread(_read_text, Path(path))
    except _TooBig as exc:
        return None, positions, [too_big(exc.size)]
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return None, positions, [Problem("", "cannot_read", {"reason": reason})]
    document, problems = parse_document(text, positions)
    return document, positions, problems


async def check_file(path: str | Path) -> ImportReport:
    """Validate a file against itself alone (no database: references must resolve
    within the file), with the line of every problem."""
    started = time.perf_counter()
    document, positions, problems = await _read(path)
    if not problems:
        problems = with_lines(validate(document), document, positions)
    return ImportReport(source=str(path), problems=problems, dry_run=True,
                        seconds=time.perf_counter() - started)


class _Rollback(Exception):
    def __init__(self, report: ImportReport) -> None:
        self.report = report


async def import_file(
    db: Database,
    path: str | Path,
    *,
    actor_telegram_id: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ImportReport:
    """Read, validate and import a YAML file in one transaction (all or nothing).

    `dry_run` validates against the database and counts what would change, then
    rolls back. Problems (including YAML syntax errors and a refusal by the
    database) come back in `report.problems`; nothing raises for a bad file.
    """
    started = time.perf_counter()
    source = str(path)
    document, positions, problems = await _read(path)
    if problems:
        return ImportReport(source=source, problems=problems)
    try:
        async with db.session() as session:
            report = await import_document(
                session, document, source=source, actor_telegram_id=actor_telegram_id, now=now)
            if report.problems or dry_run:
                raise _Rollback(report)
    except _Rollback as rollback:
        report = rollback.report
        report.dry_run = dry_run
        report.problems = with_lines(report.problems, document, positions)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        return ImportReport(source=source, problems=[
            Problem("", "database_refused", {"reason": str(reason)})])
    report.seconds = time.perf_counter() - started
    return report


# --------------------------------------------------------------------------- export


def dump_document(document: Mapping[str, Any]) -> str:
    return dump_yaml(dict(document))


async def export_file(db: Database, path: str | Path) -> ExportReport:
    """Write the database as a data file (the import format)."""
    async with db.session() as session:
        document = await export_document(session)
    text = dump_document(document)
    target = Path(path)
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(target.write_text, text, encoding="utf-8")
    return ExportReport(
        path=str(path), counts={section: len(document[section]) for section in SECTIONS})
