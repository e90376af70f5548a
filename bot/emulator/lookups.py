"""The methods that answer from or change the emulator's state without sending: getMe,
button answers, the command menus and menu buttons, chats, members and files."""

from __future__ import annotations

import json
import re
from typing import Any

from bot.emulator.records import ApiCall
from bot.emulator.records import ApiError
from bot.emulator.state import MEMBER_TYPES
from bot.emulator.state import TelegramState

COMMAND = re.compile(r"[a-z0-9_]{1,32}")
LANGUAGE = re.compile(r"[a-z]{2}")
PRESENT = frozenset({"creator", "administrator", "member", "restricted"})


class Lookups(TelegramState):
    """getMe, answering queries, commands and menu buttons, chats, members, files."""

    def commands_for(self, scope: dict[str, Any] | None = None,
                     language_code: str = "") -> list[dict[str, Any]]:
        """The command menu set for a scope (default: {"type": "default"}) and language."""
        return self.commands.get(_scope_key(scope, language_code), [])

    def _get_me(self, call: ApiCall) -> dict[str, Any]:
        return self.spec.fill("User", {**self.bot_user, "can_join_groups": True,
                                       "can_read_all_group_messages": False,
                                       "supports_inline_queries": True})

    def _answer_query(self, call: ApiCall) -> bool:
        query_id = call.params.get("callback_query_id") or call.params.get("inline_query_id")
        if query_id not in self._open_queries:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired "
                                "or query ID is invalid")
        self._open_queries.discard(query_id)
        return True

    def _set_commands(self, call: ApiCall) -> bool:
        language = call.params.get("language_code", "")
        if language and not LANGUAGE.fullmatch(language):
            raise ApiError(400, "Bad Request: LANGUAGE_CODE_INVALID")
        commands = call.params["commands"]
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        for command in commands:  # lengths and the scope's type: checked against the spec
            if not COMMAND.fullmatch(command["command"]):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        key = _scope_key(call.params.get("scope"), language)
        self.commands[key] = [{"command": c["command"], "description": c["description"]}
                              for c in commands]
        return True

    def _get_commands(self, call: ApiCall) -> list[dict[str, Any]]:
        return self.commands_for(call.params.get("scope"), call.params.get("language_code", ""))

    def _delete_commands(self, call: ApiCall) -> bool:
        self.commands.pop(_scope_key(call.params.get("scope"),
                                     call.params.get("language_code", "")), None)
        return True

    def _set_menu_button(self, call: ApiCall) -> bool:
        button = call.params.get("menu_button") or {"type": "default"}
        self.menu_buttons[call.chat_id] = button
        return True

    def _get_menu_button(self, call: ApiCall) -> dict[str, Any]:
        return self.menu_buttons.get(call.chat_id, {"type": "default"})

    def _get_chat(self, call: ApiCall) -> dict[str, Any]:
        assert call.chat_id is not None
        return self.spec.fill("ChatFullInfo", {**self.chat(call.chat_id),
                                               "accent_color_id": 0,
                                               "max_reaction_count": 11})

    def _member(self, chat_id: int, user_id: int) -> dict[str, Any]:
        status = self.member_status(chat_id, user_id)
        return self.spec.fill(MEMBER_TYPES[status], {"status": status,
                                                     "user": self.user(user_id)})

    def _get_chat_member(self, call: ApiCall) -> dict[str, Any]:
        assert call.chat_id is not None
        return self._member(call.chat_id, call.params["user_id"])

    def _get_chat_administrators(self, call: ApiCall) -> list[dict[str, Any]]:
        chat_id = call.chat_id
        assert chat_id is not None
        if chat_id > 0:
            return []
        admins = [user for (chat, user), status in self._members.items()
                  if chat == chat_id and status in {"creator", "administrator"}]
        admins.sort(key=lambda user: self._members[(chat_id, user)] != "creator")
        return [self._member(chat_id, user) for user in admins]

    def _get_chat_member_count(self, call: ApiCall) -> int:
        if call.chat_id is None or call.chat_id > 0:
            return 2
        return sum(1 for (chat, _), status in self._members.items()
                   if chat == call.chat_id and status in PRESENT)

    def _get_file(self, call: ApiCall) -> dict[str, Any]:
        stored = self._files.get(call.params["file_id"])
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": stored.file_size,
                "file_path": f"files/{stored.file_id}/{stored.file_name or 'file'}"}


def _scope_key(scope: dict[str, Any] | None, language_code: str | None) -> tuple[str, str]:
    return json.dumps(scope or {"type": "default"}, sort_keys=True), language_code or ""
