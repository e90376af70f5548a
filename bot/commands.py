"""The commands each feature offers, so /help and the command menus come from one list."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from telegram import BotCommand

from core.enums import Role, role_permits
from i18n import Translator


class Where(StrEnum):
    private = "private"
    group = "group"
    anywhere = "anywhere"


@dataclass(frozen=True)
class CommandInfo:
    name: str
    # None: anyone, registered or not.
    min_role: Role | None
    where: Where
    # Catalogue keys: `<key>.description` (menu and /help) and `<key>.example`.
    key: str

    def description(self, tr: Translator) -> str:
        return tr(f"{self.key}.description")

    def example(self, tr: Translator) -> str:
        return tr(f"{self.key}.example")


def visible_commands(
    commands: Iterable[CommandInfo], role: Role | None, *, in_group: bool
) -> list[CommandInfo]:
    allowed = {Where.anywhere, Where.group if in_group else Where.private}
    return [c for c in commands if c.where in allowed and role_permits(role, c.min_role)]


def menu(commands: Iterable[CommandInfo], tr: Translator) -> list[BotCommand]:
    return [BotCommand(c.name, c.description(tr)[:256]) for c in commands]
