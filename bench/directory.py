"""A synthetic directory for the benchmarks: provincial departments and city bureaus,
twelve branches, Chinese names, mobile and landline numbers, titles and notes, and
agreements with clauses built from cooperation vocabulary (a tenth in Traditional
characters, a quarter superseded); and the fixed mix of queries asked of it.

Seeded, so every run (and every commit compared) loads the same rows.
"""

from __future__ import annotations

import random
from typing import Any

import opencc
from sqlalchemy import insert
from sqlalchemy import text

from core.enums import AgreementStatus
from core.enums import LiaisonRole
from core.enums import UnitLevel
from storage.db import Database
from storage.models import Agreement
from storage.models import Branch
from storage.models import Clause
from storage.models import ClauseMechanism
from storage.models import Liaison
from storage.models import Mechanism
from storage.models import Unit
from storage.models import Zone
from storage.models import ZoneMembership

SEED = 20241123

# (name, short name, abbreviation, English)
PROVINCES = [
    ("北京市公安局", "北京", "京", "Beijing"),
    ("天津市公安局", "天津", "津", "Tianjin"),
    ("河北省公安厅", "河北", "冀", "Hebei"),
    ("山西省公安厅", "山西", "晋", "Shanxi"),
    ("内蒙古自治区公安厅", "内蒙古", "蒙", "Inner Mongolia"),
    ("辽宁省公安厅", "辽宁", "辽", "Liaoning"),
    ("吉林省公安厅", "吉林", "吉", "Jilin"),
    ("黑龙江省公安厅", "黑龙江", "黑", "Heilongjiang"),
    ("上海市公安局", "上海", "沪", "Shanghai"),
    ("江苏省公安厅", "江苏", "苏", "Jiangsu"),
    ("浙江省公安厅", "浙江", "浙", "Zhejiang"),
    ("安徽省公安厅", "安徽", "皖", "Anhui"),
    ("福建省公安厅", "福建", "闽", "Fujian"),
    ("江西省公安厅", "江西", "赣", "Jiangxi"),
    ("山东省公安厅", "山东", "鲁", "Shandong"),
    ("河南省公安厅", "河南", "豫", "Henan"),
    ("湖北省公安厅", "湖北", "鄂", "Hubei"),
    ("湖南省公安厅", "湖南", "湘", "Hunan"),
    ("广东省公安厅", "广东", "粤", "Guangdong"),
    ("广西壮族自治区公安厅", "广西", "桂", "Guangxi"),
    ("海南省公安厅", "海南", "琼", "Hainan"),
    ("重庆市公安局", "重庆", "渝", "Chongqing"),
    ("四川省公安厅", "四川", "川", "Sichuan"),
    ("贵州省公安厅", "贵州", "黔", "Guizhou"),
    ("云南省公安厅", "云南", "滇", "Yunnan"),
    ("西藏自治区公安厅", "西藏", "藏", "Tibet"),
    ("陕西省公安厅", "陕西", "陕", "Shaanxi"),
    ("甘肃省公安厅", "甘肃", "甘", "Gansu"),
    ("青海省公安厅", "青海", "青", "Qinghai"),
    ("宁夏回族自治区公安厅", "宁夏", "宁", "Ningxia"),
    ("新疆维吾尔自治区公安厅", "新疆", "新", "Xinjiang"),
]
CITY_CHARS = "安宁平阳泉州山江河源丰远城德昌盛兴隆华东西南北新海川林岭溪"
BRANCHES = [
    ("刑侦", "Criminal Investigation", ["刑警", "CID"]),
    ("治安", "Public Order", ["治安管理"]),
    ("交管", "Traffic", ["交警", "交通管理"]),
    ("反恐", "Counter-terrorism", ["反恐怖"]),
    ("网安", "Cyber Security", ["网警"]),
    ("禁毒", "Narcotics", ["缉毒"]),
    ("情报指挥", "Intelligence and Command", ["指挥中心"]),
    ("法制", "Legal Affairs", []),
    ("警务保障", "Logistics", ["装财"]),
    ("经侦", "Economic Crime", ["经济犯罪侦查"]),
    ("出入境", "Exit and Entry", []),
    ("技侦", "Technical Investigation", []),
]
ZONES = [
    ("西北警务协作区", "西北", "Northwest", ["陕西", "甘肃", "青海", "宁夏", "新疆", "内蒙古"]),
    ("泛西南地区警务合作", "泛西南", "Pan-Southwest", ["重庆", "四川", "贵州", "云南", "西藏"]),
    ("长三角区域警务一体化", "长三角", "Yangtze River Delta", ["上海", "江苏", "浙江", "安徽"]),
]
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
    "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华文玉兰辉建国红梅亮俊峰波鹏宇浩凯婷雪琳晨"
TITLES = [
    "支队长",
    "副支队长",
    "大队长",
    "科长",
    "副科长",
    "民警",
    "联络员",
    "值班长",
    "主任",
    "教导员",
]
NOTES = [
    "负责跨区域协查对接",
    "夜间请先拨打值班室",
    "涉枪涉爆案件联络",
    "重大安保期间驻守指挥中心",
    "兼任联席会议联络员",
    "负责情报信息互享",
]
PINYIN = {"王": "wang", "李": "li", "张": "zhang", "刘": "liu", "陈": "chen", "杨": "yang"}
MECHANISMS = [
    ("intel", "情报信息互享"),
    ("ops", "重大行动互援"),
    ("cases", "执法办案互助"),
    ("order", "治安管控互动"),
    ("support", "警务保障互补"),
    ("ct", "反恐防恐"),
    ("stability", "重点维稳"),
    ("traffic", "交通安全"),
]
SUBJECTS = ["各方", "协作各方", "成员单位", "轮值主席单位", "各省区公安机关", "联络员"]
VERBS = ["应当建立", "应当完善", "定期开展", "及时通报", "共同推进", "依法落实", "统筹组织"]
OBJECTS = [
    "情报信息互享机制",
    "重大行动互援机制",
    "执法办案协作",
    "跨区域协查",
    "涉枪涉爆案件通报",
    "遗失枪支爆炸物品追查",
    "联席会议制度",
    "联络员制度",
    "专家库建设",
    "跨区域联合演练",
    "视频会议系统建设",
    "大数据多边共享",
    "案件预警通报",
    "情报指令发布",
    "值班备勤制度",
    "交通安全联合整治",
    "重点人员动态管控",
    "管辖争议协商",
]
WHEN = [
    "在四十八小时内",
    "每季度",
    "每年至少一次",
    "在重大安保活动期间",
    "接到请求后",
    "按照协议约定",
]
PURPOSE = [
    "确保信息共享及时准确",
    "提升协作效能",
    "形成打击犯罪合力",
    "维护区域社会稳定",
    "保障群众生命财产安全",
    "做到快速响应",
]


# --------------------------------------------------------------------------- data


def _phone(rng: random.Random) -> str:
    digits = "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
    style = rng.random()
    if style < 0.4:
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    if style < 0.6:
        return f"{digits[:3]} {digits[3:7]} {digits[7:]}"
    return digits


def _landline(rng: random.Random) -> str:
    area = rng.choice(["010", "022", "028", "029", "0871", "0931", "0971", "021", "025"])
    return f"{area}-{rng.randint(6000000, 8999999)}"


def _sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(SUBJECTS)}{rng.choice(WHEN)}{rng.choice(VERBS)}{rng.choice(OBJECTS)}，"
        f"{rng.choice(PURPOSE)}。"
    )


async def load(db: Database, rows: int, clause_count: int) -> dict[str, Any]:
    rng = random.Random(SEED)
    s2t = opencc.OpenCC("s2t")
    facts: dict[str, Any] = {"names": [], "phones": [], "usernames": []}
    async with db.session() as session:
        provinces = []
        for index, (name, short, abbreviation, english) in enumerate(PROVINCES):
            unit = Unit(
                code=f"p{index}",
                name=name,
                short_name=short,
                abbreviation=abbreviation,
                english=english,
                aliases=[],
                level=UnitLevel.province,
            )
            provinces.append(unit)
        session.add_all(provinces)
        await session.flush()
        cities: list[Unit] = []
        seen = {p.short_name for p in provinces}
        for province in provinces:
            for _ in range(10):
                while True:
                    short = rng.choice(CITY_CHARS) + rng.choice(CITY_CHARS)
                    if short not in seen and short[0] != short[1]:
                        break
                seen.add(short)
                cities.append(
                    Unit(
                        code=f"c{len(cities)}",
                        name=f"{short}市公安局",
                        short_name=short,
                        aliases=[],
                        level=UnitLevel.city,
                        parent_id=province.id,
                    )
                )
        session.add_all(cities)
        branches = [
            Branch(code=f"b{i}", name=name, english=english, aliases=aliases)
            for i, (name, english, aliases) in enumerate(BRANCHES)
        ]
        session.add_all(branches)
        await session.flush()
        by_short = {p.short_name: p for p in provinces}
        for index, (name, short, english, members) in enumerate(ZONES):
            zone = Zone(code=f"z{index}", name=name, short_name=short, english=english, aliases=[])
            session.add(zone)
            await session.flush()
            for member in members:
                session.add(ZoneMembership(zone_id=zone.id, unit_id=by_short[member].id))

        units = provinces + cities
        # Provinces hold a larger share of the directory than each city bureau.
        weights = [12.0 if u.level == UnitLevel.province else 1.0 for u in units]
        surname_weights = [1.0 / (1 + i) ** 0.7 for i in range(len(SURNAMES))]
        taken: set[tuple[int, int, str]] = set()
        batch: list[dict[str, Any]] = []
        made = 0
        step = max(1, rows // 100)
        while made < rows:
            unit = rng.choices(units, weights)[0]
            branch = rng.choice(branches)
            surname = rng.choices(SURNAMES, surname_weights)[0]
            given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
            name = surname + given
            if (unit.id, branch.id, name) in taken:
                continue
            taken.add((unit.id, branch.id, name))
            phones = [_phone(rng)]
            if rng.random() < 0.3:
                phones.append(_landline(rng))
            username = None
            if rng.random() < 0.2:
                username = f"{PINYIN.get(surname, 'officer')}{rng.randint(100, 99999)}"
            batch.append(
                {
                    "unit_id": unit.id,
                    "branch_id": branch.id if rng.random() > 0.03 else None,
                    "name": name,
                    "title": rng.choice(TITLES),
                    "role": LiaisonRole.backup if rng.random() < 0.33 else LiaisonRole.primary,
                    "phones": phones,
                    "telegram_username": username,
                    "notes": rng.choice(NOTES) if rng.random() < 0.1 else None,
                    "active": rng.random() > 0.02,
                }
            )
            if made % step == 0:
                facts["names"].append(name)
                facts["phones"].append(phones[0])
                if username:
                    facts["usernames"].append(username)
            made += 1
            if len(batch) >= 5000:
                await (await session.connection()).execute(insert(Liaison.__table__), batch)
                batch = []
        if batch:
            await (await session.connection()).execute(insert(Liaison.__table__), batch)

        mechanisms = [Mechanism(code=code, name=name, aliases=[]) for code, name in MECHANISMS]
        session.add_all(mechanisms)
        await session.flush()
        per_agreement = 50
        agreements = []
        for index in range(max(1, clause_count // per_agreement)):
            status = AgreementStatus.superseded if index % 4 == 3 else AgreementStatus.in_force
            agreements.append(
                Agreement(
                    code=f"a{index}",
                    title=f"区域警务协作框架协议（第{index + 1}版）",
                    short_title=f"协作协议{index + 1}",
                    status=status,
                )
            )
        session.add_all(agreements)
        await session.flush()
        numbers = "一二三四五六七八九十"
        clause_rows: list[dict[str, Any]] = []
        links: list[tuple[int, list[int]]] = []
        for index in range(clause_count):
            agreement = agreements[index % len(agreements)]
            traditional = agreement.id % 10 == 7
            position = index // len(agreements) + 1
            tagged = rng.sample(range(len(mechanisms)), rng.choice((1, 1, 2)))
            heading = MECHANISMS[tagged[0]][1] if rng.random() < 0.6 else rng.choice(OBJECTS)
            body = "".join(_sentence(rng) for _ in range(rng.randint(2, 4)))
            if traditional:
                heading, body = s2t.convert(heading), s2t.convert(body)
            clause_rows.append(
                {
                    "agreement_id": agreement.id,
                    "number": f"第{numbers[(position - 1) % 10]}条-{position}",
                    "position": position,
                    "heading": heading,
                    "text": body,
                }
            )
            links.append((index, [mechanisms[t].id for t in tagged]))
        for start in range(0, len(clause_rows), 2000):
            await (await session.connection()).execute(
                insert(Clause.__table__), clause_rows[start : start + 2000]
            )
        ids = [r[0] for r in await session.execute(text("SELECT id FROM clauses ORDER BY id"))]
        await (await session.connection()).execute(
            insert(ClauseMechanism.__table__),
            [
                {"clause_id": ids[index], "mechanism_id": mechanism_id}
                for index, mechanism_ids in links
                for mechanism_id in mechanism_ids
            ],
        )
    return facts


# --------------------------------------------------------------------------- queries


def query_mix(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, query): the fixed mix, 2 to 6 characters, both scripts, hits and misses."""
    s2t = opencc.OpenCC("s2t")
    names = facts["names"]
    phones = [p.replace("-", "").replace(" ", "") for p in facts["phones"]]
    contacts = [
        "四川 刑侦",
        "川 刑警",
        "四川刑侦",
        "甘肅 治安",
        "Sichuan CID",
        "云南 禁毒 谁值班",
        "广东网安",
        "苏 交警",
        "新疆 反恐",
        "浙江经侦",
        "泛西南 禁毒",
        "青海",
        "禁毒",
        names[0],
        names[7],
        names[19],
        s2t.convert(names[3]),
        s2t.convert(names[11]),
        f"四川 {names[5]}",
        names[2][0],
        "王",
        "张伟",
        phones[0][:3],
        phones[1][-4:],
        phones[2][3:9],
        phones[3],
        phones[4][:7],
        "四州 刑侦",
        "王五六七",
        "99999999",
        "xyzabc",
        "涉枪",
    ]
    if facts["usernames"]:
        contacts.append(facts["usernames"][0][:6])
    clauses = [
        "协查",
        "協查",
        "涉枪",
        "涉槍",
        "枪",
        "情报信息",
        "情報信息互享",
        "联席会议",
        "跨区域联合演练",
        "大数据",
        "值班备勤",
        "涉爆 通报",
        "无此内容",
        "量子通信",
        "管辖争议",
    ]
    return [("contact", q) for q in contacts] + [("clause", q) for q in clauses]
