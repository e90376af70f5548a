"""`python -m bot check`: a clear verdict on configuration, database and Telegram."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from telegram import Bot
from telegram.error import InvalidToken
from telegram.error import TelegramError

from bot.app import file_url_for
from bot.config import Settings
from bot.leader import APPLICATION_NAME
from bot.runner import unreachable_reason
from storage import lease
from storage.db import Database
from storage.db import create_engine
from storage.migrate import is_up_to_date
from storage.outbox import outbox_stats
from storage.search.probe import check_search_backend


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


async def check_database(settings: Settings) -> list[CheckResult]:
    engine = create_engine(settings.database_url)
    safe_url = engine.url.render_as_string(hide_password=True)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            backend = engine.dialect.name
    except Exception as exc:  # report any failure to connect, whatever the driver raises
        return [CheckResult("database", False, f"cannot connect to {safe_url}: {exc}")]
    finally:
        await engine.dispose()
    results = [CheckResult("database", True, f"{backend} at {safe_url}")]
    current = await is_up_to_date(settings.database_url)
    results.append(
        CheckResult("migrations", current, "up to date" if current
                    else "pending migrations: run `python -m bot db upgrade`")
    )
    if current:
        engine = create_engine(settings.database_url)
        try:
            problem = await check_search_backend(engine)
        finally:
            await engine.dispose()
        results.append(CheckResult("search", problem is None,
                                   problem or "Chinese search is available"))
    return results


async def check_scheduler(settings: Settings) -> CheckResult:
    """Which process runs the scheduler (informational: none while no bot runs)."""
    if settings.is_sqlite:
        return CheckResult("scheduler", True, "SQLite: the one bot process runs it")
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            held = await lease.holder(connection, lease.SCHEDULER)
    except Exception as exc:  # the database check above reports the cause
        return CheckResult("scheduler", False, f"cannot ask the database: {exc}")
    finally:
        await engine.dispose()
    if held is None:
        return CheckResult("scheduler", True, "no process leads it now (is a bot running?)")
    if held.expired:
        return CheckResult("scheduler", True,
                           f"no process leads it now (is a bot running?); the last leader, "
                           f"{APPLICATION_NAME} {held.holder}, let its lease end at "
                           f"{held.expires_at:%Y-%m-%d %H:%M:%S %Z}")
    return CheckResult("scheduler", True,
                       f"led by {APPLICATION_NAME} {held.holder} since "
                       f"{held.acquired_at:%Y-%m-%d %H:%M:%S %Z} (lease #{held.token}, "
                       f"{held.seconds_left:.0f} s left)")


async def check_outbox(settings: Settings) -> CheckResult:
    """What the outbox holds (informational: rows that keep waiting mean no bot is
    sending, or Telegram refuses)."""
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            stats = await outbox_stats(session)
    except Exception as exc:  # the database check above reports the cause
        return CheckResult("outbox", False, f"cannot ask the database: {exc}")
    finally:
        await db.dispose()
    return CheckResult("outbox", True,
                       f"{stats['pending'] + stats['sending']} waiting to be sent, "
                       f"{stats['sent']} sent, {stats['failed']} failed, "
                       f"{stats['unreachable_chats']} unreachable chat(s)")


async def check_telegram(settings: Settings) -> CheckResult:
    token = settings.token_value()
    if not token:
        return CheckResult("telegram", True, "BOT_TOKEN not set: offline console mode")
    bot = Bot(token, base_url=settings.telegram_base_url,
              base_file_url=file_url_for(settings.telegram_base_url))
    try:
        async with bot:
            return CheckResult("telegram", True, f"reachable as @{bot.username}")
    except InvalidToken:
        return CheckResult("telegram", False,
                           "token rejected: Telegram answered Unauthorized to BOT_TOKEN")
    except TelegramError as exc:
        return CheckResult("telegram", False, f"Telegram unreachable: {unreachable_reason(exc)} "
                           f"({settings.telegram_base_url})")


async def run_checks(settings: Settings) -> list[CheckResult]:
    results = [CheckResult("config", True,
                           f"mode {settings.bot_mode.value}, time zone {settings.bot_timezone}, "
                           f"{len(settings.admin_ids)} administrator id(s)")]
    results += await check_database(settings)
    if all(r.ok for r in results):
        results.append(await check_scheduler(settings))
        results.append(await check_outbox(settings))
    results.append(await check_telegram(settings))
    return results
