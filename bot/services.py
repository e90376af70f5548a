"""What handlers and jobs share: settings, database, clock, delivery; and who is asking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import User as TelegramUser
from telegram.ext import CallbackContext

from bot.config import Settings
from core.enums import Role
from core.enums import role_permits
from i18n import Translator
from i18n import language_from_telegram
from storage.access import user_by_telegram_id
from storage.db import Database
from storage.models import User

if TYPE_CHECKING:
    from bot.delivery.worker import DeliveryWorker
    from bot.leader import Leader
    from bot.scheduler import Scheduler
    from bot.viewlog import ViewLog


def system_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    db: Database
    now: Callable[[], datetime] = system_now
    delivery: DeliveryWorker | None = None
    scheduler: Scheduler | None = None
    leader: Leader | None = None
    view_log: ViewLog | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    async def rescheduled(self, *planner_names: str) -> None:
        """After a commit that changed what is due: re-place those planners' jobs (here
        if this process leads the scheduler, else the leader is told). The leader is told
        first, so a rebuild here reads everything that came before it."""
        if self.leader is not None:
            await self.leader.changed(planner_names)
        if self.scheduler is not None:
            await self.scheduler.rebuild(planner_names or None)

    def wake_delivery(self) -> None:
        """Tell the outbox worker that a commit just added rows."""
        if self.delivery is not None:
            self.delivery.wake()


SERVICES_KEY = "services"


def services(context: CallbackContext[Any, Any, Any, Any]) -> Services:
    return context.bot_data[SERVICES_KEY]


@dataclass(frozen=True)
class Actor:
    """The person behind an update: registered and active, or not."""

    telegram_id: int
    user: User | None
    language: str
    # The data epoch this was read under (storage/cache.py); -1: not from the database.
    epoch: int = -1

    @property
    def registered(self) -> bool:
        return self.user is not None and self.user.active and self.user.role is not None

    @property
    def role(self) -> Role | None:
        return self.user.role if self.registered and self.user else None

    def can(self, minimum: Role | None) -> bool:
        return role_permits(self.role, minimum)

    @property
    def tr(self) -> Translator:
        return Translator(self.language)


async def resolve_actor(
    session: AsyncSession, telegram_user: TelegramUser | None, settings: Settings,
    *, epoch: int = -1,
) -> Actor:
    if telegram_user is None:
        return Actor(0, None, settings.default_language, epoch)
    user = await user_by_telegram_id(session, telegram_user.id)
    language = (user.language if user else None) or language_from_telegram(
        telegram_user.language_code, settings.default_language
    )
    return Actor(telegram_user.id, user, language, epoch)
