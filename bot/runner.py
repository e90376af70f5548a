"""Running against Telegram: polling or webhook, until SIGINT/SIGTERM.

Start-up does not depend on the network being up first: what needs only the database
(administrators, the search index, the scheduler) starts at once, then getMe is retried
with capped exponential backoff, one WARNING line per attempt, until Telegram answers;
only then do updates and the outbox flow. A rejected token, or polling where a webhook
serves the bot, ends the process with one line (exit code 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import signal

from aiohttp import web
from telegram import Update
from telegram.error import InvalidToken
from telegram.error import NetworkError
from telegram.error import RetryAfter
from telegram.ext import Application

from bot.app import build_application
from bot.app import go_online
from bot.app import prepare
from bot.app import shutdown
from bot.config import BotMode
from bot.config import Settings
from bot.services import SERVICES_KEY
from bot.services import Services
from storage.db import Database
from storage.handled import claim_update
from storage.handled import prune_handled

log = logging.getLogger(__name__)

EXIT_REFUSED = 2  # as configuration errors (bot/cli.py): the operator must change something
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram's updates are a few kilobytes; anything larger is not Telegram.
WEBHOOK_MAX_BODY = 1024 * 1024
WEBHOOK_PATH = "/telegram"
PRUNE_SECONDS = 600.0  # how often a webhook process forgets update ids older than a day


class StartRefused(Exception):
    """Start-up cannot go on until the operator changes something; one line says what."""


def make_services(settings: Settings) -> Services:
    return Services(settings=settings, db=Database(settings.database_url))


def settle_heap() -> None:
    """Put what start-up built (ORM mappers, the search vocabulary, PTB's objects) out of
    the cyclic garbage collector's sight: otherwise every full collection walks all of
    it again while each update allocates. bench/throughput: ~1.5x the updates/s."""
    gc.collect()
    gc.freeze()


def unreachable_reason(error: Exception) -> str:
    """A short reason for a failed call to Telegram (bot/logs.py redacts the token)."""
    return error.message if isinstance(error, NetworkError) else str(error)


async def connect(application: Application, settings: Settings, stop: asyncio.Event) -> bool:
    """Ask Telegram who the bot is (getMe) until it answers; False if stopped first.

    Network errors, time-outs and 5xx (all NetworkError in PTB) are retried after a wait
    doubling from TELEGRAM_RETRY_MIN_SECONDS to TELEGRAM_RETRY_MAX_SECONDS; a 429 waits
    as long as Telegram says. A 401/404 (InvalidToken) raises StartRefused.
    """
    delay = settings.telegram_retry_min_seconds
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            await application.bot.initialize()
            return True
        except InvalidToken:
            raise StartRefused("Telegram rejected BOT_TOKEN (Unauthorized): check the token "
                               "with @BotFather") from None
        except RetryAfter as error:
            wait = float(error.retry_after if isinstance(error.retry_after, int | float)
                         else error.retry_after.total_seconds())
            reason = f"flood control, retry after {wait:.0f}s"
        except NetworkError as error:  # TimedOut is a NetworkError too
            wait, reason = delay, unreachable_reason(error)
            delay = min(delay * 2, settings.telegram_retry_max_seconds)
        log.warning("Telegram unreachable (attempt %d): %s; retrying in %.0fs",
                    attempt, reason, wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
    return False


async def refuse_polling_over_a_webhook(application: Application, settings: Settings) -> None:
    """Polling would delete the webhook (PTB calls deleteWebhook) and silently cut off the
    webhook processes serving this bot: refuse, unless POLLING_DELETES_WEBHOOK says so."""
    info = await application.bot.get_webhook_info()
    if info.url and not settings.polling_deletes_webhook:
        raise StartRefused(
            f"a webhook is set ({info.url}): webhook processes serve this bot, and polling "
            "would cut them off; use BOT_MODE=webhook, or set POLLING_DELETES_WEBHOOK=true "
            "to take the updates over")


class WebhookServer:
    """Receives Telegram's updates for `application`: the secret is checked from the
    headers before any of the body is read, and bodies over WEBHOOK_MAX_BODY are refused
    (413) without being buffered, whether announced by Content-Length or streamed.

    Each update_id is handled once across every process on the database: it is claimed
    in `handled_updates` (storage/handled.py) before it is queued, and a copy posted
    again (to this process or another) is answered 200 and dropped. The claim commits
    before the update is handled, so a process killed in between loses that one update
    rather than ever handling one twice. While the database cannot take the claim the
    answer is 503: Telegram posts the update again later."""

    def __init__(self, application: Application, secret: str, listen: str, port: int) -> None:
        self.application = application
        self.secret = secret.encode()
        self.listen, self.port = listen, port
        self._runner: web.AppRunner | None = None
        self._next_prune = 0.0  # loop time of the next pruning of old claims

    async def start(self) -> None:
        app = web.Application(client_max_size=WEBHOOK_MAX_BODY)
        app.router.add_post(WEBHOOK_PATH, self.receive)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.listen, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def refuse(status: int) -> web.Response:
        """An answer that closes the connection: the rest of a refused body is not read."""
        response = web.Response(status=status)
        response.force_close()
        return response

    async def receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self.secret):
            return self.refuse(403)
        if (request.content_length or 0) > WEBHOOK_MAX_BODY:
            return self.refuse(413)
        try:
            body = await request.read()  # stops past client_max_size
        except web.HTTPRequestEntityTooLarge:
            return self.refuse(413)
        try:
            update = Update.de_json(json.loads(body), self.application.bot)
        except (ValueError, TypeError, KeyError):
            log.warning("the webhook received a body that is not an update")
            return web.Response(status=400)
        try:
            fresh = await self.claim(update.update_id)
        except Exception as error:  # the database is down or refusing: Telegram retries
            log.warning("could not record update %d as received (%s); answered 503 so that "
                        "Telegram sends it again", update.update_id, type(error).__name__)
            return web.Response(status=503)
        if fresh:
            await self.application.update_queue.put(update)
        else:
            log.debug("update %d was received before (here or by another process): not "
                      "handled again", update.update_id)
        return web.Response()

    async def claim(self, update_id: int) -> bool:
        """Record the update as taken in (storage/handled.py); False if it was before.
        Every PRUNE_SECONDS one claim also forgets the claims older than a day."""
        svc: Services = self.application.bot_data[SERVICES_KEY]
        now = svc.now()
        loop_time = asyncio.get_running_loop().time()
        async with svc.db.session() as session:
            fresh = await claim_update(session, update_id, now)
            if loop_time >= self._next_prune:
                self._next_prune = loop_time + PRUNE_SECONDS
                pruned = await prune_handled(session, now)
                if pruned:
                    log.debug("forgot %d handled update ids older than a day", pruned)
        return fresh


async def receive_updates(application: Application, settings: Settings) -> WebhookServer | None:
    """Polling, or the webhook: our server, then setWebhook with the secret."""
    if settings.bot_mode is not BotMode.webhook:
        await refuse_polling_over_a_webhook(application, settings)
        # bot/app.py always builds an Updater; PTB types it optional.
        await application.updater.start_polling(  # type: ignore[union-attr]
            allowed_updates=Update.ALL_TYPES, drop_pending_updates=False
        )
        return None
    assert settings.webhook_secret is not None and settings.webhook_url
    secret = settings.webhook_secret.get_secret_value()
    server = WebhookServer(application, secret, settings.webhook_listen, settings.webhook_port)
    await server.start()
    await application.bot.set_webhook(settings.webhook_url, secret_token=secret,
                                      allowed_updates=Update.ALL_TYPES)
    return server


async def serve(application: Application, settings: Settings, stop: asyncio.Event) -> None:
    """Run the application in the configured mode until `stop` is set.

    In webhook mode every call must carry WEBHOOK_SECRET in X-Telegram-Bot-Api-Secret-Token
    (403 otherwise, before anything is read), so the webhook port can only be fed by
    Telegram through the proxy; without a secret it does not start.
    """
    if settings.bot_mode is BotMode.webhook and not settings.webhook_secret:
        raise ValueError("WEBHOOK_SECRET is required in webhook mode")
    job_queue = application.job_queue
    await prepare(application)
    if job_queue is not None:
        await job_queue.start()  # the scheduler's jobs run before Telegram answers
    try:
        connected = await connect(application, settings, stop)
    except BaseException:
        await close_offline(application)
        raise
    if not connected:
        await close_offline(application)
        return
    server: WebhookServer | None = None
    async with application:  # getMe is done: initialize() does not call it again
        try:
            settle_heap()
            await go_online(application)
            await application.start()
            server = await receive_updates(application, settings)
            log.info("Liaison Desk is running (%s)", settings.bot_mode.value)
            await stop.wait()
        finally:
            if server is not None:
                await server.stop()
            if application.updater is not None and application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
            await close_offline(application)


async def close_offline(application: Application) -> None:
    """Stop what runs without Telegram (the job queue, the leader, the delivery worker)
    and close the connections of getMe attempts."""
    job_queue = application.job_queue
    if job_queue is not None and job_queue.scheduler.running:
        await job_queue.stop()
    await shutdown(application)
    await application.bot.shutdown()


async def run_bot(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    application = build_application(settings, make_services(settings))
    try:
        await serve(application, settings, stop)
    except StartRefused as refusal:
        log.error("not starting: %s", refusal)
        return EXIT_REFUSED
    return 0

