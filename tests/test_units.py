"""find_units, the one resolution of a typed unit name (every command, the CLI), on both
databases: every name in either script, English names with punctuation, codes in any
case, a name that begins another unit's name, and partial names as /request, /requests
and /notice take them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.enums import UnitLevel
from core.normalize import normalize
from storage.dataio import import_file
from storage.db import Database
from storage.models import Unit
from storage.requests import peer_units
from storage.units import PARTIAL_LIMIT
from storage.units import find_units
from storage.units import zone_ids_of


async def seed(db: Database) -> dict[str, int]:
    async with db.session() as session:
        units = {
            # Written in Traditional characters only, its alias too; its code in capitals.
            "河北": Unit(code="HB", name="河北省公安廳", short_name="河北", abbreviation="冀",
                       english="Hebei", aliases=["燕趙"]),
            # English names with an apostrophe; its short name begins its alias.
            "雄安": Unit(code="xiongan", name="雄安新區公安局", short_name="雄安",
                       english="Xiong'an", aliases=["雄安新區", "Xiong'an New Area"],
                       level=UnitLevel.city),
            # 新疆, this unit's short name, begins the next unit's full name.
            "新疆": Unit(code="xj", name="新疆维吾尔自治区公安厅", short_name="新疆",
                       abbreviation="新", english="Xinjiang"),
            "兵团": Unit(code="xpcc", name="新疆生产建设兵团公安局", short_name="兵团",
                       abbreviation="兵", english="XPCC"),
        }
        session.add_all(units.values())
        await session.flush()
        return {key: unit.id for key, unit in units.items()}


async def found(db: Database, typed: str, *, partial: bool = False) -> list[int]:
    async with db.reading() as session:
        return [unit.id for unit in await find_units(session, typed, partial=partial)]


@pytest.mark.parametrize("typed, unit", [
    ("河北省公安廳", "河北"), ("河北省公安厅", "河北"), ("燕趙", "河北"), ("燕赵", "河北"),
    ("冀", "河北"), ("Hebei", "河北"), ("HEBEI", "河北"), ("HB", "河北"), ("hb", "河北"),
    ("雄安新区", "雄安"), ("Xiong'an", "雄安"), ("xiong-an", "雄安"), ("Xiongan", "雄安"),
    ("XIONG'AN NEW AREA", "雄安"), ("  雄安 ", "雄安"), ("雄安新區公安局", "雄安"),
    ("新疆", "新疆"), ("新疆維吾爾自治區公安廳", "新疆"), ("兵團", "兵团"), ("xpcc", "兵团"),
])
async def test_any_name_in_either_script_names_its_unit(
    db: Database, typed: str, unit: str
) -> None:
    ids = await seed(db)
    assert await found(db, typed) == [ids[unit]]
    assert await found(db, typed, partial=True) == [ids[unit]]


async def test_part_of_a_name_only_when_partial_and_nothing_is_named_exactly(
    db: Database,
) -> None:
    ids = await seed(db)
    # 新疆 names one unit exactly: the unit whose name merely begins with it is not offered.
    assert await found(db, "新疆", partial=True) == [ids["新疆"]]
    for typed, units in [("新疆生产", ["兵团"]), ("建設兵團", ["兵团"]), ("new area", ["雄安"]),
                         ("公安廳", ["河北", "新疆"])]:
        assert await found(db, typed) == []
        assert await found(db, typed, partial=True) == [ids[u] for u in units], typed
    assert set(await found(db, "公安", partial=True)) == set(ids.values())
    for nothing in ("", "   ", "山东", "nowhere", "\x00\x07", "\x00"):
        assert await found(db, nothing) == await found(db, nothing, partial=True) == []


async def test_partial_names_offer_a_few_units_at_most(db: Database) -> None:
    async with db.session() as session:
        session.add_all(Unit(code=f"t{n}", name=f"测试{n}市公安局", short_name=f"测试{n}")
                        for n in range(PARTIAL_LIMIT + 2))
    assert await found(db, "测试") == []
    assert len(await found(db, "测试", partial=True)) == PARTIAL_LIMIT


@pytest.mark.parametrize("path", ["data/sample.yaml", "tests/data/jingjinji_hant.yaml"])
async def test_every_name_of_every_unit_finds_it(db: Database, path: str) -> None:
    """What the partial resolution took exactly before it was merged (any stored name or
    code, folded) is still taken exactly: typed as stored or in the other script."""
    await import_file(db, path)
    async with db.reading() as session:
        units = list((await session.execute(select(Unit))).scalars())
        assert units
        for unit in units:
            for name in [unit.name, unit.code, unit.short_name, unit.abbreviation,
                         unit.english, *(unit.aliases or [])]:
                for typed in {name, normalize(name)} if name else ():
                    assert unit in await find_units(session, typed), (typed, unit.name)


async def test_units_are_offered_senior_first_not_alphabetically(db: Database) -> None:
    """Ministry, province, city, county, whatever order they were added in: by the level's
    text, 城市 (city) came before 省 (province) and the ministry after both."""
    async with db.session() as session:
        added = [Unit(code=f"l{n}", name=f"{place}公安{kind}", short_name=place, level=level)
                 for n, (place, kind, level) in enumerate([
                     ("张掖", "局", UnitLevel.city), ("甘州", "分局", UnitLevel.county),
                     ("甘肃", "厅", UnitLevel.province), ("公安部", "", UnitLevel.ministry)])]
        session.add_all(added)
    async with db.reading() as session:
        offered = [unit.short_name for unit in await find_units(session, "公安", partial=True)]
    assert offered == ["公安部", "甘肃", "张掖", "甘州"]


async def test_a_city_or_county_is_in_the_zones_of_its_province(db: Database) -> None:
    """Only provinces are zone members in real directories: a county (甘州) under a city
    (张掖) under 甘肃 is in 甘肃's zone; a cycle of parents in bad data still ends."""
    await import_file(db, "data/sample.yaml")
    async with db.session() as session:
        unit = {u.short_name: u for u in (await session.execute(select(Unit))).scalars()}
        zone_of_gansu = set((await session.execute(zone_ids_of(unit["甘肃"].id))).scalars())
        for place in ("张掖", "甘州"):
            assert set((await session.execute(zone_ids_of(unit[place].id))).scalars()) \
                == zone_of_gansu != set()
        peers = {u.short_name for u in await peer_units(session, unit["甘州"].id)}
        assert {"甘肃", "青海", "四川"} <= peers and "上海" not in peers  # 四川: a partner
        unit["张掖"].parent_id = unit["甘州"].id  # 张掖 → 甘州 → 张掖 …
        await session.flush()
        assert set((await session.execute(zone_ids_of(unit["甘州"].id))).scalars()) == set()
