"""Search on both databases: contact queries in every form, paging, clauses, refresh."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

import pytest
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update

from core.enums import AgreementStatus
from core.enums import LiaisonRole
from core.enums import UnitLevel
from storage.db import Database
from storage.models import Agreement
from storage.models import Branch
from storage.models import Clause
from storage.models import Liaison
from storage.models import Mechanism
from storage.models import Unit
from storage.models import Zone
from storage.models import ZoneMembership
from storage.search.clauses import search_clauses
from storage.search.index import ensure_search_index
from storage.search.index import refresh_search_index
from storage.search.liaisons import LiaisonResults
from storage.search.liaisons import MatchTier
from storage.search.liaisons import search_liaisons
from storage.search.probe import check_search_backend
from storage.search.vocabulary import suggest

TRAFFIC_NAMES = [
    "马超",
    "胡军",
    "郭敏",
    "何平",
    "高峰",
    "林涛",
    "罗杰",
    "郑洁",
    "梁勇",
    "谢婷",
    "宋健",
    "唐亮",
]


@dataclass
class Seed:
    units: dict[str, int] = field(default_factory=dict)
    branches: dict[str, int] = field(default_factory=dict)
    liaisons: dict[str, int] = field(default_factory=dict)
    agreements: dict[str, int] = field(default_factory=dict)
    clauses: dict[str, int] = field(default_factory=dict)


async def seed(db: Database) -> Seed:
    s = Seed()
    async with db.session() as session:
        units = {
            "四川": Unit(
                code="sc",
                name="四川省公安厅",
                short_name="四川",
                abbreviation="川",
                english="Sichuan",
                aliases=["蜀"],
            ),
            "甘肃": Unit(
                code="gs",
                name="甘肃省公安厅",
                short_name="甘肃",
                abbreviation="甘",
                english="Gansu",
                aliases=["陇"],
            ),
            "云南": Unit(
                code="yn",
                name="云南省公安厅",
                short_name="云南",
                abbreviation="滇",
                english="Yunnan",
                aliases=["云"],
            ),
            "青海": Unit(
                code="qh",
                name="青海省公安厅",
                short_name="青海",
                abbreviation="青",
                english="Qinghai",
                aliases=[],
            ),
        }
        session.add_all(units.values())
        await session.flush()
        units["成都"] = Unit(
            code="cd",
            name="成都市公安局",
            short_name="成都",
            english="Chengdu",
            aliases=[],
            level=UnitLevel.city,
            parent_id=units["四川"].id,
        )
        branches = {
            "刑侦": Branch(
                code="cid", name="刑侦", english="Criminal Investigation", aliases=["刑警", "CID"]
            ),
            "治安": Branch(code="po", name="治安", english="Public Order", aliases=["治安管理"]),
            "禁毒": Branch(code="nc", name="禁毒", english="Narcotics", aliases=["缉毒"]),
            "交管": Branch(code="tr", name="交管", english="Traffic", aliases=["交警"]),
        }
        session.add_all([units["成都"], *branches.values()])
        await session.flush()
        zone = Zone(
            code="psw",
            name="泛西南地区警务合作",
            short_name="泛西南",
            english="Pan-Southwest",
            aliases=[],
        )
        session.add(zone)
        await session.flush()
        for member in ("四川", "云南", "青海"):
            session.add(ZoneMembership(zone_id=zone.id, unit_id=units[member].id))

        def liaison(key: str, unit: str, branch: str | None, name: str, **kw: object) -> None:
            row = Liaison(
                unit_id=units[unit].id,
                branch_id=branches[branch].id if branch else None,
                name=name,
                **kw,
            )
            session.add(row)
            s.liaisons[key] = row  # type: ignore[assignment]

        liaison(
            "zhangwei",
            "四川",
            "刑侦",
            "张伟",
            title="刑侦总队联络员",
            phones=["138-0000-1234"],
            telegram_username="zhangwei_sc",
        )
        liaison("lina", "四川", "刑侦", "李娜", role=LiaisonRole.backup, phones=["139 0000 5678"])
        liaison("wangfang", "四川", "治安", "王芳", phones=["028-8600-0001"])
        liaison("zhaoqiang", "四川", None, "赵强", title="指挥中心值班室")
        liaison("liuyang", "甘肃", "治安", "刘洋", phones=["+86 131 0000 2222"])
        liaison("chenjing", "云南", "禁毒", "陈静", notes="负责涉枪案件协查")
        liaison("yanglei", "云南", "禁毒", "杨磊", role=LiaisonRole.backup)
        liaison("zhangweimin", "青海", "刑侦", "张伟民")
        liaison("zhouchuan", "成都", "刑侦", "周川")
        liaison("sunli", "甘肃", "刑侦", "孙丽", active=False)
        for index, name in enumerate(TRAFFIC_NAMES):
            liaison(
                f"traffic{index}",
                "云南",
                "交管",
                name,
                role=LiaisonRole.primary if index % 3 else LiaisonRole.backup,
            )

        mechanisms = {
            name: Mechanism(code=code, name=name, aliases=[])
            for code, name in (
                ("intel", "情报信息互享"),
                ("cases", "执法办案互助"),
                ("order", "治安管控互动"),
            )
        }
        session.add_all(mechanisms.values())
        in_force = Agreement(
            code="psw2024",
            title="泛西南地区警务合作协议（2024）",
            short_title="泛西南协议2024",
            status=AgreementStatus.in_force,
        )
        old = Agreement(
            code="psw2019",
            title="泛西南地區警務合作協議（2019）",
            short_title="泛西南协议2019",
            status=AgreementStatus.superseded,
        )
        other = Agreement(
            code="nw",
            title="西北警务协作区暨川藏多领域警务协作框架协议",
            short_title="西北框架协议",
            status=AgreementStatus.in_force,
        )
        session.add_all([in_force, old, other])
        await session.flush()

        def clause(
            key: str,
            agreement: Agreement,
            number: str,
            position: int,
            heading: str | None,
            body: str,
            mechs: list[str],
        ) -> None:
            row = Clause(
                agreement_id=agreement.id,
                number=number,
                position=position,
                heading=heading,
                text=body,
            )
            row.mechanisms = [mechanisms[m] for m in mechs]
            session.add(row)
            s.clauses[key] = row  # type: ignore[assignment]

        clause(
            "intel",
            in_force,
            "第一条",
            1,
            "情报信息互享",
            "各方建立情报信息互享机制，定期交换涉枪涉爆案件线索。",
            ["情报信息互享"],
        )
        clause(
            "cases",
            in_force,
            "第二条",
            2,
            "执法办案互助",
            "对跨区域流窜作案的案件，各方收到协查请求后应在四十八小时内答复办理结果。",
            ["执法办案互助"],
        )
        clause(
            "guns",
            in_force,
            "第三条",
            3,
            "治安管控互动",
            "对遗失枪支、爆炸物品开展跨区域追查，并互相通报重大涉枪涉爆案件。",
            ["治安管控互动"],
        )
        clause("liaison", in_force, "第四条", 4, "协查联络", "建立联络员制度，指定专人负责。", [])
        clause(
            "old",
            old,
            "第一條",
            1,
            "相互協查",
            "各方應當相互協查，涉槍案件優先辦理，並及時反饋結果。",
            [],
        )
        clause("nw", other, "第一条", 1, "反恐防恐", "加强反恐防恐情报交流与联合处置。", [])
        await session.flush()
        s.units = {k: v.id for k, v in units.items()}
        s.branches = {k: v.id for k, v in branches.items()}
        s.liaisons = {k: v.id for k, v in s.liaisons.items()}  # type: ignore[misc]
        s.agreements = {"in_force": in_force.id, "old": old.id, "other": other.id}
        s.clauses = {k: v.id for k, v in s.clauses.items()}  # type: ignore[misc]
        await refresh_search_index(session)
    return s


async def find(db: Database, query: str, **kw: int) -> LiaisonResults:
    async with db.session() as session:
        return await search_liaisons(session, query, **kw)


def names(seed_data: Seed, results: LiaisonResults) -> list[str]:
    by_id = {v: k for k, v in seed_data.liaisons.items()}
    return [by_id[h.liaison_id] for h in results.hits]


SICHUAN_CID = ["zhangwei", "lina", "wangfang", "zhaoqiang"]


@pytest.mark.parametrize(
    "query",
    [
        "四川 刑侦",
        "川 刑警",
        "四川刑侦",
        "川刑警",
        "刑侦 四川",
        "Sichuan CID",
        "sichuan cid",
        "ＳＩＣＨＵＡＮ　ＣＩＤ",
        "四川　刑侦",
        "四川省公安厅 刑侦总队",
        "四川省刑侦",
        "四川 刑偵",
        "找四川刑侦的电话",
    ],
)
async def test_unit_and_branch_queries(db: Database, query: str) -> None:
    s = await seed(db)
    results = await find(db, query, limit=10)
    # Only the unit's liaisons of that branch are listed and counted (primary before
    # backup); the unit's other branches are counted apart, never mixed in.
    assert names(s, results) == ["zhangwei", "lina"]
    assert [h.tier for h in results.hits] == [MatchTier.EXACT, MatchTier.EXACT]
    assert results.total == 2 and results.other_branches == len(SICHUAN_CID) - 2
    assert results.tier_counts[MatchTier.EXACT] == 2
    assert results.hits[0].primary and not results.hits[1].primary
    assert results.hits[0].score > results.hits[1].score
    assert results.hits[0].unit_id == s.units["四川"]
    assert results.hits[0].branch_id == s.branches["刑侦"]


async def test_more_query_forms(db: Database) -> None:
    s = await seed(db)

    results = await find(db, "甘肅 治安")
    assert names(s, results) == ["liuyang"]
    assert results.hits[0].tier is MatchTier.EXACT

    results = await find(db, "云南 禁毒 谁值班")
    assert names(s, results)[:2] == ["chenjing", "yanglei"]  # primary before backup
    assert results.tier_counts[MatchTier.EXACT] == 2
    assert results.total == 2 and results.other_branches == len(TRAFFIC_NAMES)

    results = await find(db, "云南禁毒联系人")
    assert names(s, results)[:2] == ["chenjing", "yanglei"]

    results = await find(db, "张伟")
    assert names(s, results) == ["zhangwei", "zhangweimin"]
    assert [h.tier for h in results.hits] == [MatchTier.NAME, MatchTier.FUZZY]

    assert names(s, await find(db, "張偉")) == ["zhangwei", "zhangweimin"]
    assert names(s, await find(db, "张伟的电话")) == ["zhangwei", "zhangweimin"]
    assert names(s, await find(db, "138")) == ["zhangwei"]
    assert names(s, await find(db, "１３８")) == ["zhangwei"]
    assert names(s, await find(db, "0000 1234")) == ["zhangwei"]
    assert names(s, await find(db, "13800001234")) == ["zhangwei"]
    assert names(s, await find(db, "2222")) == ["liuyang"]
    assert names(s, await find(db, "zhangwei")) == ["zhangwei"]
    assert names(s, await find(db, "ZhangWei_SC")) == ["zhangwei"]
    assert names(s, await find(db, "涉枪")) == ["chenjing"]
    assert names(s, await find(db, "值班室")) == []  # a noise word, not a term

    # 川 inside a name is not Sichuan; alone it is.
    assert names(s, await find(db, "周川")) == ["zhouchuan"]
    assert sorted(names(s, await find(db, "川"))) == sorted(SICHUAN_CID)
    assert names(s, await find(db, "川菜")) == []

    # A unit with a name, a zone with a branch.
    assert names(s, await find(db, "四川 张伟")) == ["zhangwei"]
    assert names(s, await find(db, "张伟 四川")) == ["zhangwei"]
    results = await find(db, "泛西南 禁毒", limit=50)
    assert names(s, results)[:2] == ["chenjing", "yanglei"]
    assert results.total == 2  # only 禁毒; 四川, 云南交管, 青海 are counted apart
    assert results.other_branches == 4 + len(TRAFFIC_NAMES) + 1

    # One-character Chinese term, e.g. a surname.
    assert sorted(names(s, await find(db, "张"))) == ["zhangwei", "zhangweimin"]

    # Inactive liaisons are not found.
    assert (await find(db, "孙丽")).total == 0


async def test_paging(db: Database) -> None:
    await seed(db)
    everything = await find(db, "云南 交管", limit=50)
    total = len(TRAFFIC_NAMES)  # 云南's two 禁毒 liaisons are counted apart
    assert everything.total == total and everything.other_branches == 2
    assert everything.tier_counts == {MatchTier.EXACT: len(TRAFFIC_NAMES), MatchTier.UNIT: 2}
    ordered = [h.liaison_id for h in everything.hits]
    assert len(set(ordered)) == total
    assert {h.tier for h in everything.hits} == {MatchTier.EXACT}
    primaries = [h.primary for h in everything.hits]  # primary before backup
    assert primaries == sorted(primaries, reverse=True)

    pages = []
    for offset in range(0, 15, 5):
        page = await find(db, "云南 交管", offset=offset, limit=5)
        assert page.total == total
        pages.extend(h.liaison_id for h in page.hits)
    assert pages == ordered
    last = await find(db, "云南 交管", offset=10, limit=5)
    assert len(last.hits) == total - 10 and not last.has_more

    # The unit alone lists every branch: 禁毒 and 交管 together.
    across = await find(db, "云南", offset=1, limit=3)
    assert across.total == 2 + len(TRAFFIC_NAMES) and across.other_branches == 0
    full = await find(db, "云南", limit=50)
    assert [h.liaison_id for h in across.hits] == [h.liaison_id for h in full.hits[1:4]]
    beyond = await find(db, "云南 禁毒", offset=100, limit=5)
    assert beyond.hits == [] and beyond.total == 2


async def test_no_result_and_suggestions(db: Database) -> None:
    await seed(db)
    results = await find(db, "四州 刑侦")
    assert results.total == 0 and results.hits == []
    assert results.suggestions and results.suggestions[0].label == "四川省公安厅"

    async with db.session() as session:
        near = await suggest(session, "Sichaun")
        assert near[0].kind == "unit" and near[0].label == "四川省公安厅"
        near = await suggest(session, "刑正")
        assert near[0].kind == "branch" and near[0].label == "刑侦"
        assert await suggest(session, "") == []
    assert (await find(db, "")).total == 0
    assert (await find(db, "谁值班")).total == 0


async def test_clause_search(db: Database) -> None:
    s = await seed(db)
    by_id = {v: k for k, v in s.clauses.items()}
    async with db.session() as session:
        results = await search_clauses(session, "协查")
        # in force first: heading match (协查联络) before text match; superseded last
        assert [by_id[h.clause_id] for h in results.hits] == ["liaison", "cases", "old"]
        assert results.total == 3
        assert [h.in_heading for h in results.hits] == [True, False, True]
        cases = results.hits[1]
        assert "协查" in cases.snippet and len(cases.snippet) <= 42
        assert cases.agreement_short_title == "泛西南协议2024"
        assert cases.number == "第二条" and cases.mechanisms == ("执法办案互助",)
        assert results.hits[2].agreement_status is AgreementStatus.superseded
        assert "協查" in results.hits[2].snippet  # the original (Traditional) text

        traditional = await search_clauses(session, "協查")
        assert [h.clause_id for h in traditional.hits] == [h.clause_id for h in results.hits]

        guns = await search_clauses(session, "涉枪")
        assert [by_id[h.clause_id] for h in guns.hits] == ["intel", "guns", "old"]
        assert "涉枪" in guns.hits[0].snippet and "涉槍" in guns.hits[2].snippet

        current = await search_clauses(session, "涉枪", include_superseded=False)
        assert [by_id[h.clause_id] for h in current.hits] == ["intel", "guns"]
        assert current.total == 2

        assert [by_id[h.clause_id] for h in (await search_clauses(session, "枪")).hits] == [
            "intel",
            "guns",
            "old",
        ]
        mech = await search_clauses(session, "情报信息互享")
        assert [by_id[h.clause_id] for h in mech.hits] == ["intel"] and mech.hits[0].in_heading
        both = await search_clauses(session, "協查 四十八小时")
        assert [by_id[h.clause_id] for h in both.hits] == ["cases"]
        assert "四十八小时" in both.hits[0].snippet or "协查" in both.hits[0].snippet

        page = await search_clauses(session, "协查", offset=1, limit=1)
        assert [by_id[h.clause_id] for h in page.hits] == ["cases"] and page.total == 3
        assert (await search_clauses(session, "协查", offset=3)).hits == []
        only = await search_clauses(session, "涉枪", agreement_id=s.agreements["old"])
        assert [by_id[h.clause_id] for h in only.hits] == ["old"] and only.total == 1
        assert (await search_clauses(session, "无此条款")).total == 0
        assert (await search_clauses(session, "  ")).total == 0
        wide = await search_clauses(session, "ＡＢＣ反恐")
        assert wide.total == 0
        assert (await search_clauses(session, "反恐　防恐")).total == 1


async def test_refresh_after_edits(db: Database) -> None:
    s = await seed(db)
    async with db.session() as session:
        await session.execute(
            update(Liaison).where(Liaison.id == s.liaisons["wangfang"]).values(name="王小芳")
        )
        await session.execute(
            update(Liaison)
            .where(Liaison.id == s.liaisons["zhangwei"])
            .values(role=LiaisonRole.backup)
        )
        await session.execute(
            update(Liaison).where(Liaison.id == s.liaisons["lina"]).values(role=LiaisonRole.primary)
        )
        await session.execute(
            update(Liaison).where(Liaison.id == s.liaisons["chenjing"]).values(active=False)
        )
        # Not re-indexed yet: the index still answers from the old rows.
        assert names(s, await search_liaisons(session, "王芳")) == ["wangfang"]
        await refresh_search_index(
            session,
            liaison_ids=[s.liaisons[k] for k in ("wangfang", "zhangwei", "lina", "chenjing")],
        )
    assert names(s, await find(db, "王小芳")) == ["wangfang"]
    assert (await find(db, "王芳")).total == 0
    assert names(s, await find(db, "四川 刑侦"))[:2] == ["lina", "zhangwei"]
    assert names(s, await find(db, "云南 禁毒"))[:1] == ["yanglei"]

    # Deleting a liaison removes it from the index without a refresh (cascade).
    async with db.session() as session:
        await session.execute(delete(Liaison).where(Liaison.id == s.liaisons["liuyang"]))
    assert (await find(db, "刘洋")).total == 0
    assert (await find(db, "甘肃")).total == 0

    # New unit and liaison: the vocabulary is reloaded after a refresh.
    async with db.session() as session:
        tibet = Unit(
            code="xz",
            name="西藏自治区公安厅",
            short_name="西藏",
            abbreviation="藏",
            english="Tibet",
            aliases=[],
        )
        session.add(tibet)
        await session.flush()
        new = Liaison(
            unit_id=tibet.id, branch_id=s.branches["刑侦"], name="次仁", phones=["13512345678"]
        )
        session.add(new)
        await session.flush()
        await refresh_search_index(session, liaison_ids=[new.id])
        new_id = new.id
    results = await find(db, "藏 刑警")
    assert [h.liaison_id for h in results.hits] == [new_id]
    assert [h.liaison_id for h in (await find(db, "西藏自治区")).hits] == [new_id]

    # Clause edits and an agreement's status change.
    async with db.session() as session:
        await session.execute(
            update(Clause).where(Clause.id == s.clauses["nw"]).values(text="建立跨省协查通道。")
        )
        await session.execute(
            update(Agreement)
            .where(Agreement.id == s.agreements["in_force"])
            .values(status=AgreementStatus.superseded)
        )
        await refresh_search_index(
            session, clause_ids=[s.clauses["nw"]], agreement_ids=[s.agreements["in_force"]]
        )
        results = await search_clauses(session, "协查")
        by_id = {v: k for k, v in s.clauses.items()}
        assert [by_id[h.clause_id] for h in results.hits] == ["nw", "liaison", "old", "cases"]
        assert (await search_clauses(session, "反恐防恐")).total == 1  # heading kept
        await session.execute(delete(Clause).where(Clause.id == s.clauses["nw"]))
        assert (await search_clauses(session, "跨省")).total == 0

    # A full rebuild gives the same answers as the incremental refreshes.
    async with db.session() as session:
        await refresh_search_index(session)
    assert names(s, await find(db, "四川 刑侦"))[:2] == ["lina", "zhangwei"]
    assert [h.liaison_id for h in (await find(db, "次仁")).hits] == [new_id]


async def test_ensure_index_and_backend_probe(db: Database) -> None:
    s = await seed(db)
    assert await check_search_backend(db.engine) is None
    async with db.session() as session:
        assert await ensure_search_index(session) is False
        await session.execute(delete(Liaison).where(Liaison.active.is_(False)))
    # Empty the index, as right after the migration on an existing database.
    async with db.session() as session:
        from storage.models import ClauseSearchRow
        from storage.models import LiaisonSearchRow

        await session.execute(delete(LiaisonSearchRow))
        await session.execute(delete(ClauseSearchRow))
    assert (await find(db, "张伟")).total == 0
    async with db.session() as session:
        assert await ensure_search_index(session) is True
    assert names(s, await find(db, "张伟")) == ["zhangwei", "zhangweimin"]
    async with db.session() as session:
        count = len((await session.execute(select(Liaison.id))).all())
        assert count == len(s.liaisons) - 1


async def test_counts_are_capped(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage.search import limits

    s = await seed(db)
    monkeypatch.setattr(limits, "RESULT_CAP", 5)
    results = await find(db, "云南", limit=3)
    assert results.capped and results.total == 5
    assert len(results.hits) == 3
    rest = await find(db, "云南", offset=3, limit=10)
    assert len(rest.hits) == 2 and not rest.has_more  # paging stops at the cap
    assert (await find(db, "云南", offset=5)).hits == []
    ranked = [h.liaison_id for h in results.hits + rest.hits]
    assert len(set(ranked)) == 5
    assert [h.primary for h in results.hits + rest.hits] == sorted(
        [h.primary for h in results.hits + rest.hits], reverse=True
    )
    # Under the cap: exact.
    small = await find(db, "四川 刑侦")
    assert not small.capped and small.total == 2 and small.other_branches == 2

    by_id = {v: k for k, v in s.clauses.items()}
    monkeypatch.setattr(limits, "RESULT_CAP", 2)
    async with db.session() as session:
        clauses = await search_clauses(session, "协查")
        assert clauses.capped and clauses.total == 2
        assert [by_id[h.clause_id] for h in clauses.hits] == ["liaison", "cases"]
        assert not (await search_clauses(session, "情报信息互享")).capped


async def test_probe_reports_a_missing_index(db: Database) -> None:
    from sqlalchemy import text

    async with db.session() as session:
        if db.dialect == "sqlite":
            await session.execute(text("DROP TRIGGER search_liaisons_ai"))
            missing = "search_liaisons_ai"
        else:
            await session.execute(text("DROP INDEX ix_search_liaisons_grams"))
            missing = "ix_search_liaisons_grams"
    try:
        problem = await check_search_backend(db.engine)
        assert problem is not None and missing in problem and "db upgrade" in problem
    finally:
        if db.dialect == "postgresql":  # the database is shared by this process's tests
            async with db.session() as session:
                await session.execute(
                    text(
                        "CREATE INDEX ix_search_liaisons_grams ON search_liaisons USING gin (grams)"
                    )
                )
    assert await check_search_backend(db.engine) is None or db.dialect == "sqlite"
