"""Random updates never crash a handler and never leak to unregistered users or chats.

Hypothesis draws users (registered, unknown), chats (private, a duty room, a group that
is not one), texts (any Unicode: emoji, right-to-left, control characters, 4,096
characters), commands with garbage arguments, edited messages, and forged button data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot.emulator import BotApiEmulator
from bot.testing import BotHarness
from storage.dataio import import_file
from storage.db import Database

ADMIN, OFFICER, STRANGER = 910000001, 910000007, 910000099
DUTY_ROOM, STRANGE_GROUP = -1001000000103, -1009999999999
PHONE = re.compile(r"100 0000 \d{4}|5550-\d{4}")
CLAUSE_WORDS = ("跨区域流失", "全覆盖协查", "相互通报重大涉枪涉爆")  # clause texts only

commands = st.sampled_from(["/start", "/help", "/lang", "/contact", "/oncall", "/agreement",
                            "/invite", "/register_room", "/deactivate", "/activate",
                            "/request", "/requests", "/meeting", "/meetings", "/cancel",
                            "/nonexistent"])
garbage = st.text(max_size=80)
texts = st.one_of(
    garbage,
    st.builds(lambda c, a: f"{c} {a}", commands, garbage),
    st.sampled_from(["四川 刑侦", "協查 危爆物品", "\u202e四川\u202c", "🚓🚨" * 50, "\x00\x07",
                     "ＳＩＣＨＵＡＮ　ＣＩＤ", "x" * 4096, "@liaison_desk_bot 四川 刑侦"]),
)
callbacks = st.one_of(
    garbage.map(lambda s: s[:64]),
    st.builds(lambda p, a: f"{p}{a}"[:64],
              st.sampled_from(["ct:", "ag:", "lang:", "rq:", "mt:", "ct:pg:", "ag:c:", "ct:ub:"]),
              st.text(alphabet="0123456789:-abc", max_size=20)),
)
people = st.sampled_from([ADMIN, OFFICER, STRANGER])
chats = st.sampled_from(["private", DUTY_ROOM, STRANGE_GROUP])
actions = st.tuples(st.sampled_from(["message", "edited", "button"]), people, chats, texts,
                    callbacks)


@pytest.fixture
async def fuzz_bot(emulator: BotApiEmulator, database_url: str) -> AsyncIterator[BotHarness]:
    db = Database(database_url)
    assert not (await import_file(db, "data/sample.yaml")).problems
    await db.dispose()
    emulator.add_user(ADMIN, "周立新")
    emulator.add_user(OFFICER, "王雅琴", language_code="zh-hant")
    emulator.add_user(STRANGER, "王五", language_code="ar")
    emulator.add_group(DUTY_ROOM, "四川省公安厅指挥中心值班室", members=[ADMIN, OFFICER])
    emulator.add_group(STRANGE_GROUP, "闲聊群", members=[ADMIN, STRANGER])
    async with BotHarness(emulator, database_url) as harness:
        # A message the bot sent, for button presses to point at.
        harness.anchor = (await harness.send(ADMIN, "/lang")).messages[-1]  # type: ignore
        yield harness


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
@given(st.lists(actions, min_size=1, max_size=6))
async def test_random_updates(fuzz_bot: BotHarness, caplog: pytest.LogCaptureFixture,
                              batch: list) -> None:
    caplog.set_level(logging.ERROR)
    emulator = fuzz_bot.emulator
    for kind, user, chat, text, data in batch:
        chat_id = user if chat == "private" else chat
        before = len(emulator.calls)
        if kind == "button":
            anchor = fuzz_bot.anchor  # type: ignore[attr-defined]
            update = emulator.make_callback_update(user, anchor.message_ref, data)
        else:
            if kind == "edited":  # an edit needs the original message first
                emulator.make_message_update(user, chat_id, "原文")
            update = emulator.make_message_update(user, chat_id, text, edited=kind == "edited")
        await fuzz_bot.feed(update)
        sent = emulator.calls[before:]
        if user == STRANGER or chat_id == STRANGE_GROUP:
            for call in sent:
                shown = str(call.params.get("text", "")) + str(call.params.get("results", ""))
                assert not PHONE.search(shown), shown
                assert not any(word in shown for word in CLAUSE_WORDS), shown
        if kind == "message" and chat == "private" and user != STRANGER and text.strip():
            assert any(c.method in {"sendMessage", "sendDocument"} for c in sent), text
    assert not [r for r in caplog.records if "error while handling" in r.getMessage()]
