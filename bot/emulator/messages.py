"""The bot's messages: sends of every kind, copies and forwards, edits and deletions,
checked as Telegram checks them (HTML entities, lengths, "message is not modified"; inline
keyboards are checked against the spec with the parameters)."""

from __future__ import annotations

import re
from typing import Any

from bot.emulator.formatting import parse_html
from bot.emulator.records import ApiCall
from bot.emulator.records import ApiError
from bot.emulator.records import StoredFile
from bot.emulator.records import utf16_len
from bot.emulator.spec import SCALARS
from bot.emulator.spec import Method
from bot.emulator.state import TelegramState

NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup of "
                "the message")
MAX_TEXT, MAX_CAPTION = 4096, 1024
# Compared by "message is not modified".
SHOWN = ("text", "entities", "caption", "caption_entities", "reply_markup")
# Not carried over by copyMessage / forwardMessage.
MESSAGE_META = frozenset({"message_id", "from", "chat", "date", "edit_date", "reply_markup",
                          "reply_to_message", "forward_origin", "media_group_id"})


class Messages(TelegramState):
    """Sending, copying, editing and deleting the bot's messages."""

    def _generic(self, method: Method, call: ApiCall) -> Any:
        """A plausible result of the declared type for methods without their own behaviour."""
        returns = method.returns
        if returns[0] == "Message":
            if "Boolean" in returns:  # edits of media, live locations, checklists
                message = self._editable(call)
                return True if message is None else message
            return self._send(call, self._content(method, call.params))
        if returns[0] == "Boolean":
            return True
        return self.spec.default(returns[0])

    def _send(self, call: ApiCall, body: dict[str, Any], chat_id: int | None = None
              ) -> dict[str, Any]:
        """Store and return a new message of the bot in the call's chat."""
        chat_id = call.chat_id if chat_id is None else chat_id
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat = self.chat(chat_id)
        status = self.member_status(chat_id, self.bot_id)
        if status == "kicked" and chat["type"] == "private":
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if status in {"left", "kicked"}:
            verb = "kicked from" if status == "kicked" else "not a member of"
            raise ApiError(403, f"Forbidden: bot is {verb} the {chat['type']} chat")
        params = call.params
        message: dict[str, Any] = {"message_id": 0, "from": self.bot_user, "chat": chat,
                                   "date": int(self.clock())}
        reply = params.get("reply_parameters")
        if reply:
            target = self._messages.get((self._resolve(reply.get("chat_id", chat_id)),
                                         reply["message_id"]))
            if target is not None:
                message["reply_to_message"] = self._quoted(target)
            elif not reply.get("allow_sending_without_reply"):
                raise ApiError(400, "Bad Request: message to be replied not found")
        message.update(body)
        message.update(self._markup(params))
        message["message_id"] = self._next_message_id(chat_id)
        self._messages[(chat_id, message["message_id"])] = message
        self._bot_messages[chat_id].append(message["message_id"])
        self.stats["sent"] += 1
        self.stats.sent_per_chat[chat_id] += 1
        return message

    def _text(self, params: dict[str, Any], key: str) -> dict[str, Any]:
        """`text` or `caption` with its entities, parsed as Telegram parses it."""
        value = params.get(key)
        if value is None:
            return {}
        entities_key = "entities" if key == "text" else "caption_entities"
        if str(params.get("parse_mode") or "").lower() == "html":
            text, entities = parse_html(value, self.user)
        else:  # Markdown modes are passed through unparsed
            text, entities = value, params.get(entities_key) or []
        if not text.strip():
            if key == "text":
                raise ApiError(400, "Bad Request: message text is empty")
            return {}
        if utf16_len(text) > (MAX_TEXT if key == "text" else MAX_CAPTION):
            raise ApiError(400, "Bad Request: message is too long" if key == "text"
                           else "Bad Request: message caption is too long")
        return {key: text, entities_key: entities} if entities else {key: text}

    @staticmethod
    def _markup(params: dict[str, Any]) -> dict[str, Any]:
        """The inline keyboard a message shows; other keyboards are not part of it. Its
        buttons were checked with the parameters, against the spec (one kind each, styles,
        lengths: bot.emulator.spec)."""
        markup = params.get("reply_markup")
        if not isinstance(markup, dict) or not markup.get("inline_keyboard"):
            return {}
        return {"reply_markup": markup}

    def _content(self, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        """Text, caption and the sent object (document, photo, location…) of a send call."""
        body = {**self._text(params, "text"), **self._text(params, "caption")}
        key = _snake(method.name[4:]) if method.name.startswith("send") else ""
        types = self._message_fields.get(key)
        if types is None:
            return body
        type_name = types[0]
        value = params.get(key)
        if type_name == "Array of PhotoSize":
            body[key] = [self._photo_size(self._file_for(value))]
        elif "file_id" in self.spec.fields(type_name):
            body[key] = self._media(type_name, self._file_for(value))
        else:
            scalars = {n: params[n] for n, t in self.spec.fields(type_name).items()
                       if n in params and t[0] in SCALARS}
            body[key] = self.spec.fill(type_name, scalars)
        return body

    def _file_for(self, value: Any) -> StoredFile:
        """An upload, a known file_id, or a URL Telegram fetches."""
        if isinstance(value, StoredFile):
            return value
        if isinstance(value, str):
            if value in self._files:
                return self._files[value]
            if value.startswith(("http://", "https://")):
                return self._files[self.add_file(b"", value.rsplit("/", 1)[-1] or None)]
        raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")

    def _send_media_group(self, call: ApiCall) -> list[dict[str, Any]]:
        group = str(next(self._media_groups))
        bodies = []
        for item in call.params["media"]:
            kind = item["type"]
            stored = self._file_for(item["media"])
            types = self._message_fields.get(kind, ("Document",))
            media = ([self._photo_size(stored)] if kind == "photo"
                     else self._media(types[0], stored))
            bodies.append({kind: media, "media_group_id": group, **self._text(item, "caption")})
        return [self._send(call, body) for body in bodies]

    def _source(self, call: ApiCall, verb: str) -> dict[str, Any]:
        source = self._messages.get((self._resolve(call.params["from_chat_id"]),
                                     call.params["message_id"]))
        if source is None:
            raise ApiError(400, f"Bad Request: message to {verb} not found")
        return source

    def _copy_message(self, call: ApiCall) -> dict[str, Any]:
        body = _content_of(self._source(call, "copy"))
        if "caption" in call.params:
            body.pop("caption", None)
            body.pop("caption_entities", None)
            body.update(self._text(call.params, "caption"))
        return {"message_id": self._send(call, body)["message_id"]}

    def _forward_message(self, call: ApiCall) -> dict[str, Any]:
        source = self._source(call, "forward")
        body = _content_of(source)
        body["forward_origin"] = {"type": "user", "date": source["date"],
                                  "sender_user": source["from"]}
        return self._send(call, body)

    # ------------------------------------------------------------------ editing

    def _editable(self, call: ApiCall) -> dict[str, Any] | None:
        """The bot's message an edit is about; None for inline messages (not kept)."""
        params = call.params
        if "inline_message_id" in params:
            return None
        if call.chat_id is None or "message_id" not in params:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        message = self._messages.get((call.chat_id, params["message_id"]))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message["from"]["id"] != self.bot_id:
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    def _edit(self, call: ApiCall, changes: dict[str, Any],
              replaced: tuple[str, ...] = ()) -> dict[str, Any] | bool:
        """Apply an edit; an edit that does not repeat the inline keyboard removes it."""
        message = self._editable(call)
        if message is None:
            return True
        new = {k: v for k, v in message.items() if k not in replaced and k != "reply_markup"}
        new.update(changes)
        new.update(self._markup(call.params))
        if all(new.get(k) == message.get(k) for k in SHOWN):
            raise ApiError(400, NOT_MODIFIED)
        new["edit_date"] = int(self.clock())
        self._messages[(new["chat"]["id"], new["message_id"])] = new
        self.stats["edited"] += 1
        return new

    def _edit_text(self, call: ApiCall) -> dict[str, Any] | bool:
        message = self._editable(call)
        if message is not None and "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        return self._edit(call, self._text(call.params, "text"),
                          ("text", "entities", "link_preview_options"))

    def _edit_caption(self, call: ApiCall) -> dict[str, Any] | bool:
        message = self._editable(call)
        if message is not None and "text" in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        return self._edit(call, self._text(call.params, "caption"),
                          ("caption", "caption_entities"))

    def _edit_reply_markup(self, call: ApiCall) -> dict[str, Any] | bool:
        return self._edit(call, {})

    def _delete_message(self, call: ApiCall) -> bool:
        if self._messages.pop((call.chat_id, call.params["message_id"]), None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    def _delete_messages(self, call: ApiCall) -> bool:
        for message_id in call.params["message_ids"]:
            self._messages.pop((call.chat_id, message_id), None)
        return True


def _content_of(message: dict[str, Any]) -> dict[str, Any]:
    """What copyMessage and forwardMessage carry over: text, caption, media."""
    return {k: v for k, v in message.items() if k not in MESSAGE_META}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
