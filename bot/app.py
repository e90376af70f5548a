"""Application assembly: services, handlers, command menus, error handling, lifecycle."""

from __future__ import annotations

import logging
from collections import deque

from telegram import LinkPreviewOptions
from telegram import Update
from telegram.constants import ChatType
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import Application
from telegram.ext import ApplicationBuilder
from telegram.ext import ContextTypes
from telegram.ext import Defaults

from bot.answers import AnsweringApplication
from bot.answers import DeskBot
from bot.bot_api import AiohttpRequest
from bot.bot_api import quiet_typed_method_advice
from bot.commands import CommandInfo
from bot.commands import default_menus
from bot.config import BotMode
from bot.config import Settings
from bot.delivery.state import DeliverySettings
from bot.delivery.worker import DeliveryWorker
from bot.leader import Leader
from bot.persistence import DatabasePersistence
from bot.persistence import SharedStateApplication
from bot.plans import PLANNERS
from bot.ratebudget.budget import budget_for
from bot.ratebudget.limiter import BudgetRateLimiter
from bot.scheduler import Scheduler
from bot.services import SERVICES_KEY
from bot.services import Services
from bot.services import resolve_actor
from bot.updates import OrderedUpdateProcessor
from bot.viewlog import ViewLog
from handlers import FALLBACKS
from handlers import FEATURES
from handlers.common import COMMANDS_KEY
from handlers.common import last_known_language
from i18n import DEFAULT_LANGUAGE
from i18n import t
from storage.access import ensure_administrators
from storage.db import Database
from storage.db import is_unreachable
from storage.search.index import ensure_search_index

log = logging.getLogger(__name__)

BOT_API_CONNECTIONS = 8
BOT_API_POOL_TIMEOUT = 10.0
ERRORS_TOLD_KEY = "errors_told"  # in bot_data: updates whose failure the user was told
# What the bot sends through PTB's methods is HTML, without link previews. Calls through
# `do_api_request` (handlers.common.reply, the outbox's payloads) are sent as they are,
# Defaults do not reach them: they carry the same two parameters themselves.
DEFAULTS = Defaults(parse_mode=ParseMode.HTML,
                    link_preview_options=LinkPreviewOptions(is_disabled=True))


def file_url_for(base_url: str) -> str:
    return base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else base_url


def all_feature_commands() -> list[CommandInfo]:
    return [command for feature in FEATURES for command in feature.COMMANDS]


def build_application(settings: Settings, svc: Services | None = None) -> Application:
    token = settings.token_value()
    if not token:
        raise ValueError("BOT_TOKEN is required to build the application")
    svc = svc or Services(settings=settings, db=Database(settings.database_url))
    quiet_typed_method_advice()  # handlers reply through do_api_request (handlers/common.py)
    # Behind one URL, the next update of a conversation may reach another process.
    # Either way every button press is answered once (bot/answers.py).
    builder = ApplicationBuilder().application_class(
        SharedStateApplication if settings.bot_mode is BotMode.webhook else AnsweringApplication)
    # One send budget for everything the bot sends, replies first (bot/ratebudget/).
    budget = budget_for(settings.delivery_rate, settings.database_url, token)
    bot = DeskBot(
        token,
        base_url=settings.telegram_base_url,
        base_file_url=settings.telegram_base_file_url or file_url_for(settings.telegram_base_url),
        # Few connections to the Bot API, reused; waiting a moment for a free connection
        # beats failing (PTB's default is 1 s). Over aiohttp: bot/bot_api.py says why.
        request=AiohttpRequest(BOT_API_CONNECTIONS, pool_timeout=BOT_API_POOL_TIMEOUT),
        get_updates_request=AiohttpRequest(1),
        rate_limiter=BudgetRateLimiter(budget),
        defaults=DEFAULTS,
    )
    application = (
        builder
        .bot(bot)
        .persistence(DatabasePersistence(svc.db))
        .concurrent_updates(OrderedUpdateProcessor(settings.update_concurrency))
        .build()
    )
    if svc.delivery is None:
        # The worker renews its rows' leases while it holds them, so a send may outlast
        # DELIVERY_LEASE_SECONDS: the calls keep the client's time-outs (5 s).
        svc.delivery = DeliveryWorker(
            svc.db, application.bot,
            DeliverySettings(global_rate=svc.settings.delivery_rate,
                             lease_seconds=svc.settings.delivery_lease_seconds,
                             poll_interval=svc.settings.delivery_poll_seconds),
            clock=svc.now, budget=budget,
        )
    if svc.view_log is None:
        svc.view_log = ViewLog(svc.db, now=svc.now)
    if svc.scheduler is None:
        svc.scheduler = Scheduler(
            svc.db, [factory(svc) for factory in PLANNERS], now=svc.now,
            wake_delivery=svc.wake_delivery,
        )
    application.bot_data[SERVICES_KEY] = svc
    application.bot_data[COMMANDS_KEY] = all_feature_commands()
    for feature in FEATURES:
        feature.register(application)
    for fallback in FALLBACKS:
        fallback(application)
    application.add_error_handler(_on_error)
    return application


async def startup(application: Application, *, background: bool = True) -> None:
    """After `initialize()`: what needs only the database (`prepare`), then what needs
    Telegram (`go_online`)."""
    await prepare(application)
    await go_online(application, background=background)


async def prepare(application: Application) -> None:
    """What needs only the database: administrators from ADMIN_IDS, the search index, the
    scheduler's catch-up and jobs (if this process leads it: bot/leader.py). The runner
    does this before Telegram answers, so the schedule keeps filling the outbox."""
    svc: Services = application.bot_data[SERVICES_KEY]
    if svc.settings.admin_ids:
        async with svc.db.session() as session:
            await ensure_administrators(
                session, svc.settings.admin_ids, default_language=svc.settings.default_language
            )
    async with svc.db.session() as session:
        if await ensure_search_index(session):
            log.info("built the search index")
    if svc.scheduler is not None and application.job_queue is not None:
        svc.leader = Leader(svc.db, svc.scheduler, application.job_queue,
                            retry_seconds=svc.settings.leader_retry_seconds,
                            lease_seconds=svc.settings.leader_lease_seconds)
        await svc.leader.start()


async def go_online(application: Application, *, background: bool = True) -> None:
    """Once Telegram answers: command menus and (unless `background` is off, as in tests
    that drain by hand) the delivery worker. Until then outbox rows wait in the database
    without spending an attempt on an unreachable Telegram."""
    svc: Services = application.bot_data[SERVICES_KEY]
    await set_default_menus(application)
    if svc.delivery is not None and background:
        svc.delivery.start()


async def shutdown(application: Application) -> None:
    svc: Services = application.bot_data[SERVICES_KEY]
    if svc.leader is not None:
        await svc.leader.stop()
    if svc.delivery is not None:
        ran = svc.delivery.running
        await svc.delivery.stop()
        stats = svc.delivery.stats()
        if ran:
            log.info("delivery worker %s stopped: %d sent, %d retried, %d failed",
                     svc.delivery.worker_id, stats["sent"], stats["retried"],
                     stats["failed"])
    await svc.db.dispose()


async def set_default_menus(application: Application) -> None:
    """The menus of every scope and language (bot.commands.default_menus); per-chat menus
    refine them by role and language."""
    svc: Services = application.bot_data[SERVICES_KEY]
    for scope, language_code, commands in default_menus(application.bot_data[COMMANDS_KEY],
                                                        svc.settings.default_language):
        try:
            await application.bot.set_my_commands(commands, scope=scope,
                                                   language_code=language_code or None)
        except TelegramError as exc:
            log.warning("could not set the default command menu: %s", exc)


async def _on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure for operators; tell the user politely, never with a traceback.
    When the database server is unreachable (a restart, an outage) nothing was done and
    trying again shortly will work: the user is told exactly that, in their language as
    last known (the database cannot be asked)."""
    log.error("error while handling an update", exc_info=context.error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    # Handlers of several groups may fail on one update (a database outage fails them
    # all): the user is told once.
    told: deque[int] = context.bot_data.setdefault(ERRORS_TOLD_KEY, deque(maxlen=256))
    if update.update_id in told:
        return
    told.append(update.update_id)
    svc: Services = context.bot_data[SERVICES_KEY]
    if is_unreachable(context.error):
        text = t(last_known_language(svc, update.effective_user), "errors.unavailable")
    else:
        text = t(await _language(svc, update), "errors.generic")
    query = update.callback_query
    try:
        if query is not None and not (isinstance(context.bot, DeskBot)
                                      and context.bot.answered(query.id)):
            await query.answer(text, show_alert=True)
        elif update.effective_message is not None and (
            update.effective_chat.type == ChatType.PRIVATE or update.effective_message.text
        ):
            await update.effective_message.reply_text(text)
    except TelegramError:
        log.warning("could not tell the user about the error")


async def _language(svc: Services, update: Update) -> str:
    try:
        async with svc.db.session() as session:
            return (await resolve_actor(session, update.effective_user, svc.settings)).language
    except Exception:  # the database may be what failed; answer in the default language
        log.warning("could not resolve the language for an error message")
        return DEFAULT_LANGUAGE
