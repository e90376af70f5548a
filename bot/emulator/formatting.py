"""Text as Telegram sees it: the HTML parse mode of what the bot sends (with Telegram's
strictness), and the command and mention entities Telegram adds to what users type."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bot.emulator.records import ApiError
from bot.emulator.records import utf16_len

HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>")
ATTRIBUTE = re.compile(r"""([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
HTML_TAGS = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
             "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
             "del": "strikethrough", "span": "spoiler", "tg-spoiler": "spoiler",
             "a": "text_link", "code": "code", "pre": "pre", "blockquote": "blockquote",
             "tg-emoji": "custom_emoji", "tg-time": "date_time"}
NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _unescape(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in NAMED:
        return NAMED[name]
    return chr(int(name[2:], 16) if name[1] == "x" else int(name[1:]))


def _entity_error(source: str, at: int, what: str) -> ApiError:
    offset = len(source[:at].encode())
    return ApiError(400, f"Bad Request: can't parse entities: {what} at byte offset {offset}")


def parse_html(source: str, user: Callable[[int], dict[str, Any]]) -> tuple[
        str, list[dict[str, Any]]]:
    """Text and entities of an HTML-formatted text, with Telegram's strictness: only its
    tags, properly nested, and every literal "<" escaped."""
    parts: list[str] = []
    length = 0
    stack: list[tuple[str, dict[str, str], int]] = []
    entities: list[dict[str, Any]] = []
    position = 0
    while True:
        opening = source.find("<", position)
        chunk = source[position:] if opening < 0 else source[position:opening]
        if chunk:
            plain = HTML_ENTITY.sub(_unescape, chunk)
            parts.append(plain)
            length += utf16_len(plain)
        if opening < 0:
            break
        tag = TAG.match(source, opening)
        if tag is None:
            raise _entity_error(source, opening, "Unexpected character \"<\"")
        closing, name, rest = tag.group(1), tag.group(2).lower(), tag.group(3)
        if closing:
            if not stack:
                raise _entity_error(source, opening, f'Unexpected end tag "{name}"')
            open_name, attributes, start = stack.pop()
            if open_name != name:
                raise _entity_error(source, opening, f'Unmatched end tag, expected '
                                                     f'"</{open_name}>", found "</{name}>"')
            entity = _html_entity(open_name, attributes, start, length, stack, user)
            if entity is not None:
                entities.append(entity)
        else:
            attributes = {m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) or ""
                          for m in ATTRIBUTE.finditer(rest)}
            if name not in HTML_TAGS or (name == "span"
                                         and attributes.get("class") != "tg-spoiler"):
                raise _entity_error(source, opening, f'Unsupported start tag "{name}"')
            stack.append((name, attributes, length))
        position = tag.end()
    if stack:
        raise ApiError(400, "Bad Request: can't parse entities: Can't find end tag "
                            f'corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(parts), entities


def _html_entity(name: str, attributes: dict[str, str], start: int, end: int,
                 stack: list[tuple[str, dict[str, str], int]],
                 user: Callable[[int], dict[str, Any]]) -> dict[str, Any] | None:
    if end == start:
        return None  # Telegram drops empty entities
    entity: dict[str, Any] = {"type": HTML_TAGS[name], "offset": start, "length": end - start}
    if name == "code" and stack and stack[-1][0] == "pre" and "class" in attributes:
        stack[-1][1]["language"] = attributes["class"].removeprefix("language-")
        return None  # the language of the enclosing pre block
    if name == "pre" and "language" in attributes:
        entity["language"] = attributes["language"]
    elif name == "a":
        href = attributes.get("href", "")
        if href.startswith("tg://user?id=") and href[13:].isdigit():
            entity.update(type="text_mention", user=user(int(href[13:])))
        elif href:
            entity["url"] = href
        else:
            return None
    elif name == "blockquote" and "expandable" in attributes:
        entity["type"] = "expandable_blockquote"
    elif name == "tg-emoji":
        entity["custom_emoji_id"] = attributes.get("emoji-id", "")
    elif name == "tg-time":
        entity["unix_time"] = int(attributes.get("unix", "0") or 0)
        if attributes.get("format"):
            entity["date_time_format"] = attributes["format"]
    return entity


USER_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w@])")
USER_MENTION = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{4,32}(?!\w)")


def detect_entities(text: str) -> list[dict[str, Any]]:
    """The bot_command and mention entities Telegram adds to what a user types."""
    found = [(m, "bot_command") for m in USER_COMMAND.finditer(text)]
    taken = [(m.start(), m.end()) for m, _ in found]
    found += [(m, "mention") for m in USER_MENTION.finditer(text)
              if not any(a <= m.start() < b for a, b in taken)]
    entities = [{"type": kind, "offset": utf16_len(text[: m.start()]),
                 "length": utf16_len(m.group(0))} for m, kind in found]
    return sorted(entities, key=lambda e: e["offset"])

