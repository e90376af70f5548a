"""`python -m bot check`: a clear verdict on configuration, database and Telegram."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from bot.app import file_url_for
from bot.config import Settings
from bot.leader import LOCK_KEY
from bot.runner import unreachable_reason
from storage.db import create_engine
from storage.migrate import is_up_to_date
from storage.search import check_search_backend


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


# Who holds the scheduler's advisory lock (a bigint key is split into classid and objid).
LEADER_QUERY = text(
    "SELECT a.application_name, a.client_addr, a.backend_start "
    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND (l.classid::bigint << 32 | l.objid::bigint) = :key"
)


async def check_scheduler(settings: Settings) -> CheckResult:
    """Which process runs the scheduler (informational: none while no bot runs)."""
    if settings.is_sqlite:
        return CheckResult("scheduler", True, "SQLite: the one bot process runs it")
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            holder = (await connection.execute(LEADER_QUERY, {"key": LOCK_KEY})).first()
    except Exception as exc:  # the database check above reports the cause
        return CheckResult("scheduler", False, f"cannot ask the database: {exc}")
    finally:
        await engine.dispose()
    if holder is None:
        return CheckResult("scheduler", True, "no process leads it now (is a bot running?)")
    name, address, since = holder
    where = f" from {address}" if address else ""
    return CheckResult("scheduler", True,
                       f"led by {name or 'a session'}{where} since {since:%Y-%m-%d %H:%M:%S %Z}")


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
    results.append(await check_telegram(settings))
    return results
