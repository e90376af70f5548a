"""Updates in: the messages, button presses, inline queries and membership changes a test
makes users send, and how the bot receives them (getUpdates long polling, or a webhook)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp

from bot.emulator.formatting import detect_entities
from bot.emulator.records import ApiCall
from bot.emulator.records import ApiError
from bot.emulator.records import StoredFile
from bot.emulator.state import DEFAULT_ALLOWED
from bot.emulator.state import MEMBER_TYPES
from bot.emulator.state import TelegramState


class UpdatesIn(TelegramState):
    """Updates users make, queued for getUpdates or posted to the webhook."""

    def _update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"update_id": next(self._update_ids), kind: payload}

    def make_message_update(
        self, user_id: int, chat_id: int, text: str | None = None, *,
        reply_to: int | tuple[int, int] | None = None, photo: bytes | str | None = None,
        document: str | tuple[str, bytes] | None = None, edited: bool = False,
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """A message from a user, as Telegram delivers it.

        `photo`/`document`: a file_id, or content (a document as (file name, content));
        `text` is then the caption. `reply_to`: a message id in this chat, or (chat_id,
        message_id). `edited`: an edited_message for `message_id` (default: the user's
        last message in the chat).
        """
        chat = self._known_chat(chat_id)
        if chat["type"] == "private" and chat_id != user_id:
            raise ValueError(f"user {user_id} cannot write in the private chat of {chat_id}")
        sender = self.user(user_id)
        if chat_id < 0:
            self._members.setdefault((chat_id, user_id), "member")
        now = int(self.clock())
        if edited:
            message_id = message_id or self._last_from.get((chat_id, user_id))
            if message_id is None or (chat_id, message_id) not in self._messages:
                raise LookupError(f"no message {message_id} of user {user_id} in {chat_id}")
            date = self._messages[(chat_id, message_id)]["date"]
        else:
            message_id, date = self._next_message_id(chat_id), now
        message: dict[str, Any] = {"message_id": message_id, "from": sender, "chat": chat,
                                   "date": date}
        if edited:
            message["edit_date"] = now
        if reply_to is not None:
            key = reply_to if isinstance(reply_to, tuple) else (chat_id, reply_to)
            if key not in self._messages:
                raise LookupError(f"no message {key} to reply to")
            message["reply_to_message"] = self._quoted(self._messages[key])
        if photo is not None:
            file_id = photo if isinstance(photo, str) else self.add_file(photo, "photo.jpg",
                                                                         "image/jpeg")
            message["photo"] = [self._photo_size(self._user_file(file_id))]
        if document is not None:
            file_id = document if isinstance(document, str) else self.add_file(
                document[1], document[0])
            message["document"] = self._media("Document", self._user_file(file_id))
        if text is not None:
            key = "caption" if photo is not None or document is not None else "text"
            message[key] = text
            entities = detect_entities(text)
            if entities:
                message["caption_entities" if key == "caption" else "entities"] = entities
        self._messages[(chat_id, message_id)] = message
        self._last_from[(chat_id, user_id)] = message_id
        return self._update("edited_message" if edited else "message", message)

    def _user_file(self, file_id: str) -> StoredFile:
        if file_id not in self._files:
            self._files[file_id] = StoredFile(file_id, file_id[-16:], None, None, b"")
        return self._files[file_id]

    def make_callback_update(self, user_id: int, message_ref: tuple[int, int],
                             data: str) -> dict[str, Any]:
        """A button press on a message, with the message as it is now; `data` may be forged.

        A message that no longer exists arrives as an InaccessibleMessage (date 0).
        """
        chat_id, message_id = message_ref
        message = self._messages.get(message_ref) or {
            "chat": self._known_chat(chat_id), "message_id": message_id, "date": 0}
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        return self._update("callback_query", {
            "id": query_id, "from": self.user(user_id), "message": message,
            "chat_instance": str(chat_id), "data": data})

    def expire_query(self, query_id: str) -> None:
        """The callback or inline query can no longer be answered, as when the bot answers
        after Telegram's ~15 s: answering it gets 400 "query is too old"."""
        self._open_queries.discard(query_id)

    def make_inline_query_update(self, user_id: int, query: str,
                                 offset: str = "") -> dict[str, Any]:
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        return self._update("inline_query", {
            "id": query_id, "from": self.user(user_id), "query": query, "offset": offset,
            "chat_type": "sender"})

    def make_my_chat_member_update(self, chat_id: int, by_user_id: int,
                                   new_status: str = "member",
                                   old_status: str | None = None) -> dict[str, Any]:
        """The bot added to (new_status "member"/"administrator") or removed from ("left",
        "kicked") a group by a user, or blocked ("kicked") and unblocked ("member") by the
        user of a private chat; the bot's status there changes accordingly."""
        chat = self._known_chat(chat_id)
        old_status = old_status or self.member_status(chat_id, self.bot_id)
        self.set_member_status(chat_id, self.bot_id, new_status)

        def member(status: str) -> dict[str, Any]:
            return self.spec.fill(MEMBER_TYPES[status], {"status": status,
                                                         "user": self.bot_user})

        return self._update("my_chat_member", {
            "chat": chat, "from": self.user(by_user_id), "date": int(self.clock()),
            "old_chat_member": member(old_status), "new_chat_member": member(new_status)})

    def enqueue(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates; returns it."""
        self._updates.append(update)
        self._update_arrived.set()
        return update

    def push_message(self, user_id: int, chat_id: int, text: str | None = None,
                     **kwargs: Any) -> dict[str, Any]:
        return self.enqueue(self.make_message_update(user_id, chat_id, text, **kwargs))

    def push_callback(self, user_id: int, message_ref: tuple[int, int],
                      data: str) -> dict[str, Any]:
        return self.enqueue(self.make_callback_update(user_id, message_ref, data))

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    async def deliver_webhook(self, update: dict[str, Any]) -> int:
        """POST an update to the webhook set with setWebhook, as Telegram would (with the
        secret token header); returns the HTTP status the bot answered."""
        if not self.webhook.get("url"):
            raise RuntimeError("no webhook is set: the bot has not called setWebhook")
        headers = {"Content-Type": "application/json"}
        if self.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = json.dumps(update, ensure_ascii=False).encode()
        async with self._session.post(self.webhook["url"], data=body,
                                      headers=headers) as response:
            return response.status

    # ------------------------------------------------------------------ receiving

    def _check_polling(self, call: ApiCall) -> list[dict[str, Any]]:
        if self.webhook.get("url"):
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is "
                                "active; use deleteWebhook to delete the webhook first")
        return []

    async def _get_updates(self, call: ApiCall) -> list[dict[str, Any]]:
        """Long polling: confirm updates before `offset`, answer as soon as any are there."""
        params = call.params
        offset, timeout = params.get("offset", 0), params.get("timeout", 0)
        limit = min(max(params.get("limit", 100), 1), 100)
        if "allowed_updates" in params:
            self._allowed = frozenset(params["allowed_updates"]) or DEFAULT_ALLOWED
        updates = self._updates
        if offset > 0:
            while updates and updates[0]["update_id"] < offset:
                updates.popleft()
        elif offset < 0:
            while len(updates) > -offset:
                updates.popleft()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ready = list(itertools.islice(
                (u for u in updates if u["update_id"] >= offset and _kind(u) in self._allowed),
                limit))
            remaining = deadline - loop.time()
            if ready or self._closing or remaining <= 0:
                return ready
            self._update_arrived.clear()
            self.polls_waiting += 1
            try:
                await asyncio.wait_for(self._update_arrived.wait(), remaining)
            except TimeoutError:
                return []
            finally:
                self.polls_waiting -= 1

    def _set_webhook(self, call: ApiCall) -> bool:
        params = call.params
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if "allowed_updates" in params:
            self._allowed = frozenset(params["allowed_updates"]) or DEFAULT_ALLOWED
        self.webhook = {k: params[k] for k in ("url", "secret_token", "max_connections")
                        if k in params} if params["url"] else {}
        return True

    def _delete_webhook(self, call: ApiCall) -> bool:
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook = {}
        return True

    def _get_webhook_info(self, call: ApiCall) -> dict[str, Any]:
        info = {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}
        if "max_connections" in self.webhook:
            info["max_connections"] = self.webhook["max_connections"]
        return info


def _kind(update: dict[str, Any]) -> str:
    return next((k for k in update if k != "update_id"), "")
