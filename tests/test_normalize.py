"""Normalisation, index tokens and query parsing (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.normalize import fold_unit_suffix
from core.normalize import fold_zone_suffix
from core.normalize import normalize
from core.normalize import normalize_many
from core.normalize import normalize_phone
from core.normalize import normalize_with_map
from core.normalize import query_terms
from core.normalize import snippet
from core.tokens import FILLER
from core.tokens import char_tokens
from core.tokens import stream_tokens
from core.tokens import term_pattern
from core.vocabulary import VocabItem
from core.vocabulary import Vocabulary
from core.vocabulary import closest_names
from core.vocabulary import parse_query
from core.vocabulary import suggest

SICHUAN, GANSU, YUNNAN, XINJIANG, NEIMENG, CHENGDU = 1, 2, 3, 4, 5, 6
CID, ORDER, NARCOTICS = 11, 12, 13
PAN_SOUTHWEST = 21

VOCABULARY = Vocabulary(
    [
        VocabItem("unit", SICHUAN, "四川省公安厅", ("四川", "Sichuan", "蜀"), ("川",)),
        VocabItem("unit", GANSU, "甘肃省公安厅", ("甘肃", "Gansu", "陇"), ("甘",)),
        VocabItem("unit", YUNNAN, "云南省公安厅", ("云南", "Yunnan", "云"), ("滇",)),
        VocabItem("unit", XINJIANG, "新疆维吾尔自治区公安厅", ("新疆", "Xinjiang"), ("新",)),
        VocabItem("unit", NEIMENG, "内蒙古自治区公安厅", ("内蒙古", "Inner Mongolia"), ("蒙",)),
        VocabItem("unit", CHENGDU, "成都市公安局", ("成都", "Chengdu")),
        VocabItem("branch", CID, "刑侦", ("刑警", "CID", "Criminal Investigation")),
        VocabItem("branch", ORDER, "治安", ("Public Order",)),
        VocabItem("branch", NARCOTICS, "禁毒", ("缉毒", "Narcotics")),
        VocabItem(
            "zone",
            PAN_SOUTHWEST,
            "泛西南地区警务合作",
            ("泛西南", "Pan-Southwest"),
            members=frozenset({SICHUAN, YUNNAN}),
        ),
    ]
)


def test_normalize_forms() -> None:
    assert normalize("甘肅省公安廳") == "甘肃省公安厅"
    assert normalize("ＳＩＣＨＵＡＮ　ＣＩＤ") == "sichuan cid"
    assert normalize("  四川 \t\n 刑侦  ") == "四川 刑侦"
    assert normalize("四川　刑侦") == "四川 刑侦"
    assert normalize("１３８－０００") == "138-000"
    assert normalize("Straße") == "strasse"
    assert normalize(None) == "" and normalize("") == ""
    texts = ["協查", None, "ＡＢＣ", "涉槍\n涉爆", ""]
    assert normalize_many(texts) == [normalize(t) for t in texts]


def test_phone_and_terms() -> None:
    assert normalize_phone("+86 138-0000-1234") == "8613800001234"
    assert normalize_phone("０２８－８６００") == "0288600"
    assert normalize_phone(None) == ""
    assert query_terms("138 0000 1234") == ["13800001234"]
    assert query_terms("张伟, 138-0000") == ["张伟", "1380000"]
    assert query_terms("协查 涉枪") == ["协查", "涉枪"]


def test_suffix_folding() -> None:
    assert fold_unit_suffix("四川省公安厅") == "四川"
    assert fold_unit_suffix("成都市公安局") == "成都"
    assert fold_unit_suffix("新疆维吾尔自治区公安厅") == "新疆"
    assert fold_unit_suffix("西藏自治区公安厅") == "西藏"
    assert fold_unit_suffix("内蒙古自治区公安厅") == "内蒙古"
    assert fold_unit_suffix("公安部") == "公安部"  # nothing would be left
    assert fold_zone_suffix("泛西南地区警务合作") == "泛西南"
    assert fold_zone_suffix("西北警务协作区") == "西北"
    assert fold_zone_suffix("长三角区域警务一体化") == "长三角"


def test_stream_tokens() -> None:
    assert stream_tokens(["张伟民"]) == ["张伟", "伟民"]
    assert stream_tokens(["张"]) == ["张"]
    assert stream_tokens(["13800001234"]) == [
        "138",
        "380",
        "800",
        "000",
        "000",
        "001",
        "012",
        "123",
        "234",
    ]
    # fillers at punctuation and between fields, never doubled, never at the ends
    assert stream_tokens(["刑侦，总队", "", "ab"]) == ["刑侦", FILLER, "总队", FILLER, "ab"]
    assert stream_tokens(["，张伟。"]) == ["张伟"]
    assert stream_tokens(["张伟138"]) == ["张伟", "138"]
    assert char_tokens(["张伟民", "abc", "张"]) == ["伟", "张", "民"]


def test_term_patterns() -> None:
    p = term_pattern("协查")
    assert p is not None and p.phrase == ("协查",) and p.single_token
    p = term_pattern("张")
    assert p is not None and p.chars == ("张",) and p.phrase == () and p.exact
    p = term_pattern("情报信息")
    assert p is not None and p.phrase == ("情报", "报信", "信息") and not p.single_token
    p = term_pattern("伟138")  # edge character cut out of a longer stored run
    assert p is not None and p.phrase == ("138",) and p.chars == ("伟",) and not p.exact
    assert term_pattern("，。") is None


@pytest.mark.parametrize(
    ("query", "units", "branches", "zones", "terms"),
    [
        ("四川 刑侦", {SICHUAN}, {CID}, set(), ()),
        ("川 刑警", {SICHUAN}, {CID}, set(), ()),
        ("甘肅 治安", {GANSU}, {ORDER}, set(), ()),
        ("Sichuan CID", {SICHUAN}, {CID}, set(), ()),
        ("ＳＩＣＨＵＡＮ", {SICHUAN}, set(), set(), ()),
        ("四川　刑侦", {SICHUAN}, {CID}, set(), ()),
        ("四川刑侦", {SICHUAN}, {CID}, set(), ()),
        ("川刑警", {SICHUAN}, {CID}, set(), ()),
        ("刑侦四川", {SICHUAN}, {CID}, set(), ()),
        ("云南 禁毒 谁值班", {YUNNAN}, {NARCOTICS}, set(), ()),
        ("云南禁毒谁值班", {YUNNAN}, {NARCOTICS}, set(), ()),
        ("找四川刑侦的电话", {SICHUAN}, {CID}, set(), ()),
        ("四川省公安厅刑侦总队张伟", {SICHUAN}, {CID}, set(), ("张伟",)),
        ("四川省 刑侦", {SICHUAN}, {CID}, set(), ()),
        ("新疆刑侦", {XINJIANG}, {CID}, set(), ()),
        ("新疆维吾尔自治区", {XINJIANG}, set(), set(), ()),
        ("inner mongolia cid", {NEIMENG}, {CID}, set(), ()),
        ("成都市 criminal investigation", {CHENGDU}, {CID}, set(), ()),
        ("泛西南 禁毒", set(), {NARCOTICS}, {PAN_SOUTHWEST}, ()),
        ("张伟", set(), set(), set(), ("张伟",)),
        ("張偉的電話", set(), set(), set(), ("张伟",)),
        ("138", set(), set(), set(), ("138",)),
        ("138-0000-1234", set(), set(), set(), ("13800001234",)),
        # 川 inside a word is not Sichuan; a person called 王云南 stays a name.
        ("川菜", set(), set(), set(), ("川菜",)),
        ("周川", set(), set(), set(), ("周川",)),
        ("王云南", set(), set(), set(), ("王云南",)),
        ("sichuancid", set(), set(), set(), ("sichuancid",)),
        ("谁值班", set(), set(), set(), ()),
    ],
)
def test_parse_query(
    query: str, units: set[int], branches: set[int], zones: set[int], terms: tuple[str, ...]
) -> None:
    parsed = parse_query(query, VOCABULARY)
    assert set(parsed.unit_ids) == units
    assert set(parsed.branch_ids) == branches
    assert set(parsed.zone_ids) == zones
    assert parsed.terms == terms


def test_zone_members_and_recognised() -> None:
    assert VOCABULARY.units_of_zones([PAN_SOUTHWEST]) == {SICHUAN, YUNNAN}
    parsed = parse_query("川 刑警", VOCABULARY)
    assert ("unit", SICHUAN, "川") in parsed.recognised
    assert ("branch", CID, "刑警") in parsed.recognised
    empty = parse_query("", VOCABULARY)
    assert not (empty.unit_ids or empty.branch_ids or empty.zone_ids or empty.terms)


def test_suggestions() -> None:
    assert suggest("四州", VOCABULARY)[0].id == SICHUAN
    assert suggest("Sichaun", VOCABULARY)[0].id == SICHUAN
    top = suggest("刑正", VOCABULARY)[0]
    assert (top.kind, top.id) == ("branch", CID)
    assert suggest("zzzz", VOCABULARY) == []
    assert suggest("", VOCABULARY) == []


def test_snippet_maps_back_to_the_original() -> None:
    text = "各方應當建立協查機制，" * 3 + "對涉槍涉爆案件實行聯合偵查，並在四十八小時內反饋結果。"
    piece = snippet(text, "涉枪")
    assert "涉槍" in piece and piece.startswith("…")
    assert len(piece) <= 42
    assert snippet("短文", "无") == "短文"
    assert snippet("ＡＢＣ涉枪", "abc涉枪") == "ＡＢＣ涉枪"


CHARS = st.sampled_from(list("四川刑侦協查涉槍ＡＢＣabc１２3 　\t-，。ßİ①"))


@given(st.text(CHARS, max_size=30))
def test_map_agrees_with_normalize(text: str) -> None:
    normalised, positions = normalize_with_map(text)
    assert normalised == normalize(text)
    assert len(positions) == len(normalised)
    assert positions == sorted(positions)
    assert all(0 <= p < len(text) for p in positions)


def test_closest_names_in_either_script_best_first() -> None:
    names = ["李曉東", "吳海燕", "施振華", "李娜", "王建国"]
    assert closest_names("李晓冬", names) == ["李曉東"]
    assert closest_names("吴海", names) == ["吳海燕"]
    assert closest_names("李晓", names)[:2] == ["李曉東", "李娜"]
    assert closest_names("赵六", names) == []
    assert len(closest_names("李", ["李一", "李二", "李三", "李四"], limit=3)) == 3
