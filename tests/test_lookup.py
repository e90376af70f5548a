"""Lookups through the real Application on the sample data: /contact, plain text,
/agreement, inline mode and /oncall — on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select

from storage.models import AuditEntry
from tools.testing import BotHarness

ADMIN = 910000001  # 周立新, administrator, zh-Hans
OFFICER = 910000007  # 王雅琴, officer in 四川, zh-Hant
STRANGER = 910000099
KUNMING_OFFICER = 910000012  # 杨丽华, officer in 昆明 (a city bureau of 云南), zh-Hant
SICHUAN_ROOM = -1001000000103
OTHER_GROUP = -1009999999999


async def audited_views(bot: BotHarness) -> int:
    async with bot.db.session() as session:
        return (await session.execute(
            select(func.count(AuditEntry.id)).where(AuditEntry.action == "contact.view")
        )).scalar_one()


async def test_contact_card_ranks_exact_matches_and_shows_who_is_on_duty(
    desk: BotHarness,
) -> None:
    sent = await desk.send(ADMIN, "/contact 四川 刑侦")
    text = sent.text
    assert text.index("四川省公安厅 · 刑侦") < text.index("张伟")
    assert text.index("张伟（主联络员）") < text.index("罗晓燕（备份联络员）")
    assert "+86 100 0000 0148" in text
    assert "值班室：028-5550" in text
    assert "在班：邓建平" in text and "至 11月30日 08:30" in text and "下一班：王雅琴" in text
    shown = text.count("👤")
    assert shown >= 2 and await audited_views(desk) == shown


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("川 刑警", "四川省公安厅 · 刑侦"),
        ("甘肅 治安", "甘肃省公安厅 · 治安"),
        ("Sichuan CID", "四川省公安厅 · 刑侦"),
        ("ＳＩＣＨＵＡＮ　刑侦", "四川省公安厅 · 刑侦"),
        ("张伟", "张伟（主联络员）"),
        ("0148", "+86 100 0000 0148"),
        ("四川刑侦", "四川省公安厅 · 刑侦"),
    ],
)
async def test_query_forms(desk: BotHarness, query: str, expected: str) -> None:
    assert expected in (await desk.send(ADMIN, f"/contact {query}")).text


async def test_many_results_are_paged(desk: BotHarness) -> None:
    first = await desk.send(ADMIN, "/contact 四川")
    assert "第 1–5 位" in first.text and first.text.count("👤") == 5
    second = await desk.press(ADMIN, first, "下一页")
    assert "第 6–" in second.text
    back = await desk.press(ADMIN, second, "上一页")
    assert "第 1–5 位" in back.text


async def test_empty_query_walks_zone_unit_branch(desk: BotHarness) -> None:
    zones = await desk.send(ADMIN, "/contact")
    assert "请选择协作区" in zones.text
    units = await desk.press(ADMIN, zones, "泛西南")
    assert "请选择单位" in units.text
    branches = await desk.press(ADMIN, units, "四川")
    assert "请选择警种" in branches.text
    cards = await desk.press(ADMIN, branches, "刑侦")
    assert "四川省公安厅 · 刑侦" in cards.text and "张伟" in cards.text


async def test_no_result_says_so_and_suggests(desk: BotHarness) -> None:
    sent = await desk.send(ADMIN, "/contact 四州 刑侦")
    assert "没有找到" in sent.text
    nothing = await desk.send(ADMIN, "/contact 完全不存在的东西")
    assert "没有找到" in nothing.text and "👤" not in nothing.text


async def test_groups_that_are_not_duty_rooms_get_no_contact_details(desk: BotHarness) -> None:
    refused = await desk.send(ADMIN, "/contact 四川 刑侦", chat_id=OTHER_GROUP)
    assert "只在已登记的值班室" in refused.text and "100 0000" not in refused.text
    mention = await desk.send(ADMIN, "@liaison_desk_bot 四川 刑侦", chat_id=OTHER_GROUP)
    assert "100 0000" not in mention.text
    chatter = await desk.send(ADMIN, "今天天气不错", chat_id=SICHUAN_ROOM)
    assert not chatter.texts  # groups: only commands and mentions
    in_room = await desk.send(ADMIN, "/contact 四川 刑侦", chat_id=SICHUAN_ROOM)
    assert "张伟" in in_room.text
    assert await audited_views(desk) == in_room.text.count("👤")


async def test_unknown_users_see_nothing_sensitive(desk: BotHarness) -> None:
    for text in ("/contact 四川 刑侦", "四川 刑侦", "/agreement 危爆物品", "/oncall 四川"):
        sent = await desk.send(STRANGER, text)
        assert "尚未登记" in sent.text
        assert "100 0000" not in sent.text and "危爆物品" not in sent.text
    assert await audited_views(desk) == 0


async def test_plain_text_lookups_answer_with_contacts_and_clauses(desk: BotHarness) -> None:
    people = await desk.send(ADMIN, "云南 禁毒 谁值班")
    assert "云南省公安厅 · 禁毒" in people.text
    clauses = await desk.send(ADMIN, "协查 危爆物品")
    assert clauses.text.startswith("📚")  # a question about clauses: clauses first
    assert "危爆物品" in clauses.text
    labels = [label for label, _ in clauses.buttons()]
    assert "👤 只看联系人" in labels and "📄 只看条款" in labels
    only_clauses = await desk.press(ADMIN, clauses, "只看条款")
    assert "👤" not in only_clauses.text and "📄" in only_clauses.text


async def test_agreement_search_cites_title_number_and_mechanisms(desk: BotHarness) -> None:
    sent = await desk.send(ADMIN, "/agreement 危爆物品")
    assert "第" in sent.text and "条" in sent.text and "治安管控互动" in sent.text
    assert "第第" not in sent.text  # numbers are stored as written: 第八条, 3.2
    clause = await desk.press(ADMIN, sent, "📄")
    assert "机制：" in clause.text and "第第" not in clause.text
    following = await desk.press(ADMIN, clause, "下一条")
    assert following.text != clause.text and "上一条" in str(following.buttons())


@pytest.mark.parametrize("query", ["协查", "協查", "涉枪"])
async def test_two_character_and_traditional_queries(desk: BotHarness, query: str) -> None:
    sent = await desk.send(ADMIN, f"/agreement {query}")
    assert "相关条款共" in sent.text


async def test_agreement_overview_marks_superseded_and_lists_by_mechanism(
    desk: BotHarness,
) -> None:
    overview = await desk.send(ADMIN, "/agreement")
    text = overview.text
    assert "现行有效" in text and "已被替代" in text
    assert text.index("现行有效") < text.index("已被替代")
    listing = await desk.press(ADMIN, overview, "治安管控互动")
    assert "相关条款" in listing.text


async def test_traditional_reader_gets_traditional_labels_and_names(desk: BotHarness) -> None:
    sent = await desk.send(OFFICER, "/contact 四川 刑偵")
    assert "主聯絡員" in sent.text and "四川省公安廳 · 刑偵" in sent.text


async def test_inline_mode_for_registered_users_only(desk: BotHarness) -> None:
    await desk.feed(desk.emulator.make_inline_query_update(ADMIN, "四川 刑侦"))
    answer = desk.emulator.calls[-1]
    assert answer.method == "answerInlineQuery"
    assert answer.params["is_personal"] is True and answer.params["cache_time"] <= 30
    assert any("张伟" in r["title"] for r in answer.params["results"])
    await desk.feed(desk.emulator.make_inline_query_update(STRANGER, "四川 刑侦"))
    refused = desk.emulator.calls[-1]
    assert refused.method == "answerInlineQuery" and refused.params["results"] == []


async def test_an_inline_query_answered_too_late_is_no_error(
        desk: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    """The officer typed on (or the database was slow): Telegram refuses the answer as too
    old. Nothing to tell anyone: DEBUG, not a traceback, and no message to any chat."""
    caplog.set_level(logging.DEBUG)
    update = desk.emulator.make_inline_query_update(ADMIN, "四川 刑侦")
    desk.emulator.expire_query(update["inline_query"]["id"])
    sent = await desk.feed(update)
    [answer] = sent.calls
    assert answer.method == "answerInlineQuery" and not answer.ok
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("could not be answered any more" in r.getMessage() for r in caplog.records)


async def test_oncall_across_a_handover(desk: BotHarness) -> None:
    clock = desk.clock  # type: ignore[attr-defined]
    clock.set(datetime(2026, 11, 30, 0, 29, tzinfo=UTC))  # 08:29 Beijing, Monday
    before = await desk.send(ADMIN, "/oncall 四川")
    assert "在班：邓建平" in before.text and "下一班：王雅琴" in before.text
    clock.advance(timedelta(minutes=2))
    after = await desk.send(ADMIN, "/oncall 四川")
    assert "在班：王雅琴" in after.text and "至 12月7日 08:30" in after.text


async def test_oncall_defaults_to_the_users_zones(desk: BotHarness) -> None:
    sent = await desk.send(ADMIN, "/oncall")  # 甘肃: the Northwest zone
    assert "甘肃省公安厅指挥中心值班室" in sent.text and "青海省公安厅指挥中心值班室" in sent.text
    unknown = await desk.send(ADMIN, "/oncall 火星")
    assert "没有找到单位" in unknown.text


async def test_a_city_bureau_officer_sees_the_zones_of_the_province(desk: BotHarness) -> None:
    """昆明 (a city under 云南) is in no zone itself: its officer's /oncall was refused
    with the usage text; the bureau sits in 云南's zones."""
    sent = await desk.send(KUNMING_OFFICER, "/oncall")  # 泛西南, in Traditional
    assert "雲南省公安廳指揮中心值班室" in sent.text and "在班：邓建平" in sent.text
    assert "甘肅" not in sent.text  # 西北 is not 云南's zone


async def test_pressing_a_button_that_changes_nothing_is_quietly_fine(
    desk: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    overview = await desk.send(ADMIN, "/agreement")
    # "Agreements" on the overview itself: the same text and buttons again.
    pressed = await desk.press_data(ADMIN, overview.messages[-1], "ag:list")
    assert pressed.calls[0].method == "answerCallbackQuery"
    assert not [r for r in caplog.records if "error while handling" in r.getMessage()]
