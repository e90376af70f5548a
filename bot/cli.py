"""`python -m bot <verb>`: run, console, import, export, db upgrade, check, invite.

Configuration problems end the process with one line naming the variable and exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import INVITATION_MAX_HOURS, ConfigError, Settings, load_settings
from bot.logs import setup_logging

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
    return parser


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
        "db": _db, "check": _check, "invite": _invite,
    }
    try:
        return asyncio.run(verbs[args.verb](settings, args))
    except KeyboardInterrupt:
        return 130


async def _db(settings: Settings, _args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    await upgrade(settings.database_url)
    print("database is up to date")
    return 0


async def prepare_database(settings: Settings) -> None:
    """Migrations first, then the sample data if the database holds no units yet."""
    from sqlalchemy import func, select

    from storage.dataio import import_file
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.models import Unit
    from views.import_report import import_summary, problem_text

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
    from storage.dataio import check_file, import_file
    from storage.db import Database
    from storage.migrate import is_up_to_date, upgrade
    from views.import_report import import_summary, render_problems

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
