"""`python -m bot <verb>`: run, console, import, export, db upgrade, check, invite,
audit verify, audit export.

Configuration problems end the process with one line naming the variable and exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable
from collections.abc import Callable
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot import loop
from bot.config import INVITATION_MAX_HOURS
from bot.config import ConfigError
from bot.config import Settings
from bot.config import load_settings
from bot.logs import setup_logging

if TYPE_CHECKING:
    from core.audit import Break
    from storage.db import Database

EXIT_CONFIG = 2
# data/sample.yaml, shipped inside the package (bot/sample.yaml links to it in the
# repository) so LOAD_SAMPLE_DATA and the console work from an installed wheel too.
SAMPLE_FILE = Path(__file__).resolve().parent / "sample.yaml"
log = logging.getLogger("bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Liaison Desk")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("run", help="apply migrations, load sample data into an empty database, run "
                     "(the offline console when BOT_TOKEN is not set)")
    verbs.add_parser("console", help="chat with the bot offline, against the Bot API emulator")
    imp = verbs.add_parser("import", help="validate and import a YAML data file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--check", action="store_true",
                     help="only validate (against the database when it is up to date); "
                     "save nothing")
    exp = verbs.add_parser("export", help="export the directory, agreements and schedules as YAML")
    exp.add_argument("file", type=Path)
    db = verbs.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade"])
    verbs.add_parser("check", help="check configuration, database and Telegram reachability")
    inv = verbs.add_parser("invite", help="create an invitation link for a unit and role")
    inv.add_argument("unit", help="unit code, full or short name (e.g. 四川)")
    inv.add_argument("role", nargs="?", default="officer",
                     help="officer, duty_officer, coordinator or admin (default officer)")
    inv.add_argument("--hours", type=int, default=None, help="validity in hours")
    aud = verbs.add_parser("audit", help="the audit log: verify its hash chain, export a period")
    aud_actions = aud.add_subparsers(dest="action", required=True, metavar="ACTION")
    aud_verify = aud_actions.add_parser(
        "verify", help="walk the hash chain and name the first entry that does not hold "
        "(exit 1), else say how many were verified")
    aud_verify.add_argument("archives", nargs="*", type=Path, metavar="ARCHIVE",
                            help="retention's archive files (AUDIT_ARCHIVE_DIR) to verify "
                            "first, up to where the database's chain begins")
    aud_export = aud_actions.add_parser(
        "export", help="a period's entries as CSV for inspectors (UTF-8 with BOM, for Excel)")
    aud_export.add_argument("--since", required=True, type=_day, metavar="DATE",
                            help="first day, YYYY-MM-DD, in BOT_TIMEZONE")
    aud_export.add_argument("--until", required=True, type=_day, metavar="DATE",
                            help="last day (included), YYYY-MM-DD")
    aud_export.add_argument("--out", type=Path, default=None, metavar="FILE",
                            help="where to write (default audit-SINCE-UNTIL.csv)")
    return parser


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: use YYYY-MM-DD") from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as problem:
        print(f"configuration error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.log_secrets())
    verbs: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
        "run": _run, "console": _console, "import": _import, "export": _export,
        "db": _db, "check": _check, "invite": _invite, "audit": _audit,
    }
    try:
        return loop.run(verbs[args.verb](settings, args))
    except KeyboardInterrupt:
        return 130


async def _db(settings: Settings, _args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    await upgrade(settings.database_url)
    print("database is up to date")
    return 0


async def prepare_database(settings: Settings) -> None:
    """Migrations first, then the sample data if the database holds no units yet."""
    from sqlalchemy import func
    from sqlalchemy import select

    from storage.dataio import import_file
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.models import Unit
    from views.import_report import import_summary
    from views.import_report import problem_text

    await upgrade(settings.database_url)
    if not settings.load_sample_data:
        return
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            empty = (await session.execute(select(func.count(Unit.id)))).scalar_one() == 0
        if empty:
            report = await import_file(db, SAMPLE_FILE, now=datetime.now(UTC))
            if report.problems:
                raise SystemExit("the sample data does not validate:\n" + "\n".join(
                    problem_text(p) for p in report.problems))
            log.info("loaded the sample data into the empty database: %s",
                     import_summary(report))
    finally:
        await db.dispose()


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    await prepare_database(settings)
    if not settings.token_value():
        print("BOT_TOKEN is not set: starting the offline console with the sample data.\n")
        from bot.console import run_console

        return await run_console(settings)
    from bot.runner import run_bot

    return await run_bot(settings)


async def _console(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.console import run_console

    await prepare_database(settings)
    return await run_console(settings)


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    """Import a data file, or with --check only validate it; problems are told in the
    desk's language, each with the file, line, record and field. Exit 1 on problems."""
    from i18n import t
    from storage.dataio import check_file
    from storage.dataio import import_file
    from storage.db import Database
    from storage.migrate import is_up_to_date
    from storage.migrate import upgrade
    from views.import_report import import_summary
    from views.import_report import render_problems

    language = settings.default_language
    if args.check and not await is_up_to_date(settings.database_url):
        report = await check_file(args.file)  # a database we may not write: the file alone
    else:
        if not args.check:
            await upgrade(settings.database_url)
        db = Database(settings.database_url)
        try:
            report = await import_file(db, args.file, dry_run=args.check,
                                      now=datetime.now(UTC))
        finally:
            await db.dispose()
    source = str(args.file)
    if report.problems:
        print(t(language, "import.report.refused", file=source,
                count=f"{len(report.problems):,}"), file=sys.stderr)
        for line in render_problems(report.problems, language, source):
            print(f"  {line}", file=sys.stderr)
        return 1
    if args.check:
        print(t(language, "import.report.check_ok", file=source,
                created=report.total("created"), updated=report.total("updated"),
                unchanged=report.total("unchanged")))
    else:
        print(import_summary(report))  # the counts, in the stable English form scripts read
    return 0


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    from storage.dataio import export_file
    from storage.db import Database

    db = Database(settings.database_url)
    try:
        await export_file(db, args.file)
    finally:
        await db.dispose()
    print(f"exported to {args.file}")
    return 0


async def _check(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.health import run_checks

    results = await run_checks(settings)
    width = max(len(r.name) for r in results)
    for result in results:
        print(f"{result.name.ljust(width)}  {'OK  ' if result.ok else 'FAIL'}  {result.detail}")
    return 0 if all(r.ok for r in results) else 1


async def _invite(settings: Settings, args: argparse.Namespace) -> int:
    from core.roles import parse_role
    from storage.access import create_invitation
    from storage.db import Database
    from storage.units import find_units

    role = parse_role(args.role)
    if role is None:
        print(f"unknown role {args.role!r}: use officer, duty_officer, coordinator or admin",
              file=sys.stderr)
        return 1
    hours = settings.invitation_ttl_hours if args.hours is None else args.hours
    if not 1 <= hours <= INVITATION_MAX_HOURS:
        print(f"--hours must be from 1 to {INVITATION_MAX_HOURS} (90 days), not {hours}"[:200],
              file=sys.stderr)
        return 1
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            units = await find_units(session, args.unit)
            if len(units) != 1:
                names = ", ".join(f"{u.name} ({u.code})" for u in units) or "none"
                print(f"{args.unit!r} must name exactly one unit; matches: {names}",
                      file=sys.stderr)
                return 1
            invitation = await create_invitation(
                session, unit=units[0], role=role, now=datetime.now(UTC),
                ttl=timedelta(hours=hours), note="created from the shell",
            )
    finally:
        await db.dispose()
    print(f"invitation for a {role.value} at {units[0].name}, valid {hours} h, single use:")
    username = await _bot_username(settings)
    if username:
        print(f"  https://t.me/{username}?start={invitation.code}")
    print(f"  (or send the bot: /start {invitation.code})")
    return 0


async def _bot_username(settings: Settings) -> str | None:
    """The bot's @username for deep links, when Telegram can be asked."""
    from telegram import Bot
    from telegram.error import TelegramError

    from bot.app import file_url_for

    token = settings.token_value()
    if not token:
        return None
    bot = Bot(token, base_url=settings.telegram_base_url,
              base_file_url=file_url_for(settings.telegram_base_url))
    try:
        async with bot:
            return bot.username
    except TelegramError as exc:
        log.warning("could not ask Telegram for the bot's username: %s", exc)
        return None


async def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import Database
    from storage.migrate import is_up_to_date

    if not await is_up_to_date(settings.database_url):
        print("the database has pending migrations: run `python -m bot db upgrade` first",
              file=sys.stderr)
        return 1
    db = Database(settings.database_url)
    try:
        if args.action == "verify":
            return await _audit_verify(db, args.archives)
        return await _audit_export(settings, db, args)
    finally:
        await db.dispose()


async def _audit_verify(db: Database, archives: list[Path]) -> int:
    """One line: how many entries held, or the first that does not and how."""
    from storage.audit_retention import verify

    result = await verify(db, archives)
    broken = result.broken
    if broken is None:
        before = ""
        if result.archived:
            before = (f"; before them {result.archived:,} archived entries in "
                      f"{len(archives)} files, seq {result.archived_from:,} to "
                      f"{result.first - 1:,}")
        elif result.first > 1:
            before = f"; entries up to seq {result.first - 1:,} archived"
        print(f"audit chain verified: {result.count:,} entries, seq {result.first:,} to "
              f"{result.last:,}{before}; head hash {result.head_hash}")
        if result.unsealed:
            print(f"{result.unsealed:,} entries are not sealed yet (their transactions are "
                  "still committing)")
        return 0
    where = f"in {result.broken_in}: " if result.broken_in else ""
    print(f"audit chain BROKEN: {where}{_break_text(broken)}", file=sys.stderr)
    return 1


def _break_text(broken: Break) -> str:
    """What does not hold, for the operator: the entry (id and seq) and what differs."""
    from core.audit import Problem

    where = f"entry id {broken.id} (seq {broken.seq})"
    return {
        Problem.gap: f"seq {broken.expected} is missing, the next entry found is id "
                     f"{broken.id} with seq {broken.found}: an entry was removed or renumbered",
        Problem.link: f"{where}: its prev_hash {broken.found} is not the hash of the entry "
                      f"before it ({broken.expected}): the entry before was changed or removed",
        Problem.content: f"{where}: its content does not match its hash (stored "
                         f"{broken.found}, computed {broken.expected}): the entry or its hash "
                         "was changed after sealing",
        Problem.tail: f"the chain's head says seq and hash {broken.expected}, the last entry is "
                      f"{broken.found}: entries at the end were removed, or the head changed",
        Problem.head: "entries are sealed but the chain's head row (audit_chain) is missing",
        Problem.joint: f"the archive files end at seq and hash {broken.found}, the "
                       f"database's chain begins after {broken.expected}: an archive file "
                       "is missing or was changed",
        Problem.unreadable: f"it cannot be read as an archive file ({broken.found})",
    }[broken.problem]


async def _audit_export(settings: Settings, db: Database, args: argparse.Namespace) -> int:
    """A period's entries as CSV, in the desk's language and time zone; the export is
    itself audited."""
    from bot.reports import csv_writer
    from core.clock import local_instant
    from i18n import Translator
    from storage.access import audit
    from storage.audit import actors_of
    from storage.audit import entries_between
    from storage.audit import subjects_of
    from storage.audit_chain import seal_pending
    from views.audit import export_header
    from views.audit import export_rows

    if args.until < args.since:
        print("--until must not be before --since", file=sys.stderr)
        return 1
    zone = settings.timezone
    start = local_instant(args.since, time(0), zone)
    end = local_instant(args.until + timedelta(days=1), time(0), zone)
    out: Path = args.out or Path(f"audit-{args.since}-{args.until}.csv")
    tr = Translator(settings.default_language)
    await seal_pending(db)
    count = 0
    with out.open("w", encoding="utf-8-sig", newline="") as stream:
        write = csv_writer(stream)
        write(export_header(tr, settings.bot_timezone))
        async with db.reading() as session:
            async for chunk in entries_between(session, start, end):
                actors, subjects = await actors_of(session, chunk), await subjects_of(session,
                                                                                      chunk)
                for row in export_rows(tr, chunk, actors, subjects, zone):
                    write(row)
                count += len(chunk)
    async with db.session() as session:
        await audit(session, "audit.export", subject_type="audit_log",
                    since=args.since.isoformat(), until=args.until.isoformat(), entries=count,
                    file=out.name, via="shell")
    print(f"exported {count:,} audit entries from {args.since} to {args.until} to {out}")
    return 0
