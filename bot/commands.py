"""The commands each feature offers, so /help and the command menus come from one list.

Telegram shows a person the menu of the narrowest scope that has one: a chat's own
(each private chat gets its reader's role and language when they register or switch
language: handlers.common.refresh_chat_menu), then the administrators' of all groups,
then all groups or all private chats. The default menus are set per scope and language
at start-up (`default_menus`)."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from telegram import BotCommand
from telegram import BotCommandScope
from telegram import BotCommandScopeAllChatAdministrators
from telegram import BotCommandScopeAllGroupChats
from telegram import BotCommandScopeAllPrivateChats

from core.enums import Role
from core.enums import role_permits
from i18n import DEFAULT_LANGUAGE
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


@dataclass(frozen=True)
class DefaultMenu:
    """A menu Telegram shows in every chat of `scope`: the commands `role` may use there."""

    scope: BotCommandScope
    role: Role
    in_group: bool


# Private chats list an officer's commands until the chat gets its reader's own; in
# groups (the duty rooms) members see an officer's, the groups' administrators, who
# register and run the rooms, a coordinator's (/register_room, /missed).
DEFAULT_MENUS = (
    DefaultMenu(BotCommandScopeAllPrivateChats(), Role.officer, in_group=False),
    DefaultMenu(BotCommandScopeAllGroupChats(), Role.officer, in_group=True),
    DefaultMenu(BotCommandScopeAllChatAdministrators(), Role.coordinator, in_group=True),
)
# Telegram's language_code for menus is a two-letter ISO 639-1 code, not the IETF tag it
# reports for users (zh-hans, zh-hant): "zh" would reach Simplified and Traditional
# readers alike, so Chinese readers (and any language without a menu of its own) get
# the desk's default language (zh-Hans unless configured otherwise), English readers
# "en"; a zh-Hant reader's private chat gets a zh-Hant menu of its own when they
# register or choose the language.
MENU_LANGUAGE_CODES = {"en": "en"}


def default_menus(commands: Iterable[CommandInfo], default_language: str = DEFAULT_LANGUAGE
                  ) -> Iterator[tuple[BotCommandScope, str, list[BotCommand]]]:
    """(scope, language_code — "" for every language without its own —, menu) of each
    default menu."""
    commands = list(commands)
    for language_code, language in {"": default_language, **MENU_LANGUAGE_CODES}.items():
        tr = Translator(language)
        for default in DEFAULT_MENUS:
            visible = visible_commands(commands, default.role, in_group=default.in_group)
            yield default.scope, language_code, menu(visible, tr)
