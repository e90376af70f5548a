"""Lookups and duty rooms on a directory nobody tuned for (tests/data/jingjinji_hant.yaml:
Traditional only, a zone the sample lacks, a unit with two duty rooms, units with none,
English names with apostrophes): counts that mean what they say, aliases in every
spelling, zones in either script, every room shown, a phone for every unit, and names
in the reader's script — through the real Application, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.conftest import HANT_ADMIN
from tests.conftest import HANT_COORDINATOR
from tests.conftest import HANT_DUTY_OFFICER
from tests.conftest import HANT_ENGLISH
from tests.conftest import HANT_OFFICER
from tests.conftest import HANT_SIMPLIFIED_DUTY
from tests.conftest import SAMPLE_ADMIN
from tools.testing import BotHarness

# --------------------------------------------------------------------------- honest counts


async def test_a_unit_without_the_branch_says_so_and_offers_its_other_branches(
    hant_desk: BotHarness,
) -> None:
    sent = await hant_desk.send(HANT_OFFICER, "/contact 河北 治安")
    assert "河北省公安厅没有治安联络员" in sent.text
    assert "共 6 位" not in sent.text and "👤" not in sent.text  # no card passed off as 治安
    assert "☎️ 值班电话：0311-5550-0150" in sent.text  # the unit can still be called
    labels = [label for label, data in sent.buttons() if data]  # not the copy buttons
    assert labels == ["刑侦", "禁毒", "交管", "情报指挥", "全部警种"]
    picked = await hant_desk.press(HANT_OFFICER, sent, "刑侦")
    assert "刑侦联络员共 2 位" in picked.text and picked.text.count("👤") == 2
    assert "另有 4 位其他警种的联络员" in picked.text


async def test_unit_and_branch_count_only_that_branch(hant_desk: BotHarness) -> None:
    sent = await hant_desk.send(HANT_OFFICER, "/contact 河北 刑侦")
    assert "刑侦联络员共 2 位，第 1–2 位" in sent.text
    assert sent.text.count("👤") == 2 and "禁毒" not in sent.text.split("ℹ️")[0]
    others = await hant_desk.press(HANT_OFFICER, sent, "其他警种（4）")
    assert "请选择警种" in others.text
    assert {"禁毒", "交管", "情报指挥"} <= {label for label, _ in others.buttons()}


async def test_sample_sichuan_cid_counts_two_not_six(desk: BotHarness) -> None:
    sent = await desk.send(SAMPLE_ADMIN, "/contact 四川 刑侦")
    assert "刑侦联络员共 2 位" in sent.text and sent.text.count("👤") == 2
    assert "共 6 位" not in sent.text
    # The unit alone still lists everyone.
    assert "共 6 位联络员" in (await desk.send(SAMPLE_ADMIN, "/contact 四川")).text


async def test_a_unit_with_no_liaison_at_all_gives_its_duty_phone(hant_desk: BotHarness) -> None:
    sent = await hant_desk.send(HANT_OFFICER, "/contact 天津 禁毒")
    assert "天津市公安局没有禁毒联络员" in sent.text
    assert "天津市公安局指挥中心值班室" not in sent.text or "022-5550-0160" in sent.text


# --------------------------------------------------------------------------- spellings


@pytest.mark.parametrize(
    ("query", "person"),
    [
        ("北京 anti-drug", "馮曉明"),
        ("北京 anti drug", "馮曉明"),
        ("北京 narcotics", "馮曉明"),
        ("Xi'an", "何嘉興"),
        ("Xian", "何嘉興"),
        ("Xi-an", "何嘉興"),
        ("xi an", "何嘉興"),
        ("Xiong'an CID", "尤俊傑"),
        ("Xiongan", "尤俊傑"),
        ("Xiong-an", "尤俊傑"),
        ("Inner Mongolia", "許寶音"),
        ("InnerMongolia", "許寶音"),
        ("inner-mongolia anti-drug", "許寶音"),
    ],
)
async def test_english_names_match_in_any_spelling(
    hant_desk: BotHarness, query: str, person: str
) -> None:
    sent = await hant_desk.send(HANT_ENGLISH, f"/contact {query}")
    assert person in sent.text and "No liaison matches" not in sent.text


async def test_zones_in_either_script_and_by_alias(hant_desk: BotHarness) -> None:
    for query in ("京津冀警务协作区", "京津冀警務協作區", "京津冀协同", "JJJ", "京津冀"):
        sent = await hant_desk.send(HANT_OFFICER, f"/chair {query}")
        assert "京津冀警务协作区" in sent.text and "轮值主席" in sent.text, query
    rooms = await hant_desk.send(HANT_OFFICER, "/oncall 京津冀协同")
    assert "北京市公安局交管指挥中心值班室" in rooms.text
    assert "天津市公安局指挥中心值班室" in rooms.text
    drugs = await hant_desk.send(HANT_OFFICER, "/contact 京津冀警务协作区 禁毒")
    assert "馮曉明" in drugs.text and "韓立新" in drugs.text


async def test_a_notice_audience_takes_a_zone_in_the_other_script(hant_desk: BotHarness) -> None:
    sent = await hant_desk.send(HANT_COORDINATOR,
                                "/notice 工作通知 一般 京津冀警务协作区 請報送值班表")
    assert "京津冀" in sent.text and "没有找到" not in sent.text and "沒有找到" not in sent.text


# --------------------------------------------------------------------------- duty rooms


async def test_every_room_of_a_unit_is_shown(hant_desk: BotHarness) -> None:
    sent = await hant_desk.send(HANT_OFFICER, "/oncall 北京")
    assert "北京市公安局指挥中心值班室" in sent.text and "李曉東" in sent.text
    assert "北京市公安局交管指挥中心值班室" in sent.text and "張德勝" in sent.text
    card = await hant_desk.send(HANT_OFFICER, "/contact 北京 禁毒")
    assert "010-5550-0160" in card.text and "010-5550-0170" in card.text


async def test_oncall_takes_a_room_by_its_own_name(hant_desk: BotHarness) -> None:
    for name in ("北京市公安局交管指挥中心值班室", "北京市公安局交管指揮中心",
                 "北京市公安局交管指揮中心值班室"):
        sent = await hant_desk.send(HANT_OFFICER, f"/oncall {name}")
        assert "張德勝" in sent.text and "李曉東" not in sent.text, name


async def test_units_without_a_room_still_give_a_number_to_call(hant_desk: BotHarness) -> None:
    hebei = await hant_desk.send(HANT_OFFICER, "/oncall 河北")
    assert "河北省公安厅" in hebei.text and "0311-5550-0150" in hebei.text
    assert "尚未登记值班室。" not in hebei.text
    xiongan = await hant_desk.send(HANT_OFFICER, "/oncall 雄安")
    assert "雄安新区公安局" in xiongan.text and "上级单位河北省公安厅值班电话：0311-5550-0150" \
        in xiongan.text
    card = await hant_desk.send(HANT_OFFICER, "/contact 河北 禁毒")
    assert "☎️ 值班电话：0311-5550-0150" in card.text
    zone = await hant_desk.send(HANT_OFFICER, "/oncall")
    assert "天津市公安局指挥中心值班室" in zone.text
    assert "未登记值班室：河北省公安厅（值班电话 0311-5550-0150）、雄安新区公安局" in zone.text


# --------------------------------------------------------------------------- the reader's script


async def test_names_in_the_readers_script(hant_desk: BotHarness) -> None:
    simplified = await hant_desk.send(HANT_OFFICER, "/contact 河北 刑偵")
    assert "河北省公安厅 · 刑侦" in simplified.text and "河北省公安廳" not in simplified.text
    traditional = await hant_desk.send(HANT_DUTY_OFFICER, "/oncall 北京")
    assert "北京市公安局指揮中心值班室" in traditional.text


async def test_english_uses_english_punctuation_and_chair_years(hant_desk: BotHarness) -> None:
    oncall = await hant_desk.send(HANT_ENGLISH, "/oncall")
    assert "、" not in oncall.text and "No duty room registered: " in oncall.text
    chair = await hant_desk.send(HANT_ENGLISH, "/chair")
    assert "2026" in chair.text and "2027" in chair.text and "、" not in chair.text


async def test_admin_sees_the_zone_in_traditional(hant_desk: BotHarness) -> None:
    sent = await hant_desk.send(HANT_ADMIN, "/chair 京津冀警务协作区")
    assert "京津冀警務協作區" in sent.text


async def test_roster_takes_a_room_by_its_name_and_never_drops_one(hant_desk: BotHarness) -> None:
    traffic = await hant_desk.send(HANT_OFFICER, "/roster 北京市公安局交管指挥中心值班室")
    assert "張德勝" in traffic.text and "李曉東" not in traffic.text
    both = await hant_desk.send(HANT_OFFICER, "/roster 北京")
    assert "北京市公安局指挥中心值班室" in both.text and "有多个值班室" in both.text
    assert "北京市公安局交管指挥中心值班室" in both.text
    mine = await hant_desk.send(HANT_DUTY_OFFICER, "/roster")  # on the first room's roster
    assert "李曉東" in mine.text and "張德勝" not in mine.text
    admin = await hant_desk.send(HANT_ADMIN, "/roster")  # in 北京, on neither roster
    assert "有多個值班室" in admin.text
    assert "尚未登记值班室" in (await hant_desk.send(HANT_OFFICER, "/roster 河北")).text


async def test_a_request_card_names_its_units_in_the_readers_script(
    hant_desk: BotHarness,
) -> None:
    """The data is Traditional only; a Simplified reader's card, list and history name
    both units in Simplified (they were shown as stored)."""
    sent = await hant_desk.send(HANT_SIMPLIFIED_DUTY,
                                "/request 河北 情報資訊互享 特急 协查涉枪线索")
    created = await hant_desk.press(HANT_SIMPLIFIED_DUTY, sent, "提交")
    number = next(word for word in created.text.replace("<code>", " ").replace(
        "</code>", " ").split() if word.startswith("XZ-"))
    card = await hant_desk.send(HANT_SIMPLIFIED_DUTY, f"/request {number}")
    assert "北京市公安局 → 河北省公安厅" in card.text, card.text
    assert "公安廳" not in card.text and "情报资讯互享" in card.text
    listed = await hant_desk.send(HANT_SIMPLIFIED_DUTY, "/requests")
    assert "公安廳" not in listed.text
    # A mechanism it does not know: the ones it has, as buttons in the reader's script.
    asked = await hant_desk.send(HANT_SIMPLIFIED_DUTY, "/request 河北 情报信息互享 特急 线索")
    assert [label for label, _ in asked.buttons()][:2] == ["情报资讯互享", "执法办案互助"]
