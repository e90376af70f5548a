"""Support for the request tests (no tests here): three units of one zone and one
outside it, a duty room for 四川 only, a linked liaison for 重庆, people in each role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

from bot.emulator import BotApiEmulator
from core.enums import Role
from storage.db import Database
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import Mechanism
from storage.models import Unit
from storage.models import User
from storage.models import Zone
from storage.models import ZoneMembership

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 09:00 in Beijing
SICHUAN_ROOM = -1001000000201
YUNNAN_ROOM = -1001000000101


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Directory:
    yunnan: int
    sichuan: int
    chongqing: int
    gansu: int
    mechanism: int
    intel: int
    requester: int  # telegram ids from here on
    duty: int
    duty2: int
    cq_liaison: int
    coordinator: int
    outsider: int
    admin: int


PEOPLE = {
    "requester": (101, "杨丽华", Role.officer, "yunnan", "zh-Hans"),
    "duty": (201, "李静", Role.duty_officer, "sichuan", "zh-Hans"),
    "duty2": (202, "王雅琴", Role.officer, "sichuan", "zh-Hant"),
    "cq_liaison": (301, "刘洋", Role.duty_officer, "chongqing", "zh-Hans"),
    "coordinator": (401, "谭晓东", Role.coordinator, "chongqing", "en"),
    "outsider": (501, "张伟", Role.duty_officer, "gansu", "zh-Hans"),
    "admin": (901, "周立新", Role.admin, None, "zh-Hans"),
}


async def make_directory(db: Database, *, yunnan_room: bool = False) -> Directory:
    async with db.session() as session:
        zone = Zone(code="southwest", name="泛西南地区警务合作", short_name="泛西南")
        northwest = Zone(code="northwest", name="西北警务协作区", short_name="西北")
        units = {
            "yunnan": Unit(code="yunnan", name="云南省公安厅", short_name="云南",
                           abbreviation="云", aliases=["滇"], english="Yunnan"),
            "sichuan": Unit(code="sichuan", name="四川省公安厅", short_name="四川",
                            abbreviation="川", aliases=["蜀"], english="Sichuan"),
            "chongqing": Unit(code="chongqing", name="重庆市公安局", short_name="重庆",
                              abbreviation="渝", english="Chongqing"),
            "gansu": Unit(code="gansu", name="甘肃省公安厅", short_name="甘肃",
                          abbreviation="甘", english="Gansu"),
        }
        session.add_all([zone, northwest, *units.values()])
        await session.flush()
        for key in ("yunnan", "sichuan", "chongqing"):
            session.add(ZoneMembership(zone_id=zone.id, unit_id=units[key].id))
        session.add(ZoneMembership(zone_id=northwest.id, unit_id=units["gansu"].id))
        mechanisms = [
            Mechanism(code="intel-sharing", name="情报信息互享", english="Intelligence sharing",
                      aliases=["信息互享"]),
            Mechanism(code="major-ops", name="重大行动互援", english="Mutual support"),
            Mechanism(code="case-assistance", name="执法办案互助", english="Case assistance"),
            Mechanism(code="public-order-control", name="治安管控互动",
                      english="Joint public-order control", aliases=["管控互动"]),
            Mechanism(code="support-sharing", name="警务保障互补", english="Support sharing"),
        ]
        session.add_all(mechanisms)
        for telegram_id, name, role, unit, language in PEOPLE.values():
            session.add(User(telegram_id=telegram_id, full_name=name, role=role,
                             unit_id=units[unit].id if unit else None, language=language))
        session.add(DutyRoom(unit_id=units["sichuan"].id, chat_id=SICHUAN_ROOM,
                             title="四川省厅值班室", registered_at=T0))
        if yunnan_room:
            session.add(DutyRoom(unit_id=units["yunnan"].id, chat_id=YUNNAN_ROOM,
                                 title="云南省厅值班室", registered_at=T0))
        session.add(Liaison(unit_id=units["chongqing"].id, name="刘洋", telegram_user_id=301,
                            phones=["+86 100 0000 0301"]))
        session.add(Liaison(unit_id=units["chongqing"].id, name="陈晨",
                            phones=["+86 100 0000 0302"]))
        await session.flush()
        return Directory(
            yunnan=units["yunnan"].id, sichuan=units["sichuan"].id,
            chongqing=units["chongqing"].id, gansu=units["gansu"].id,
            mechanism=mechanisms[3].id, intel=mechanisms[0].id,
            **{key: value[0] for key, value in PEOPLE.items()},
        )


def add_people(emulator: BotApiEmulator, rooms: dict[int, tuple[str, list[int]]]) -> None:
    """Everyone of PEOPLE on the emulator, and the duty-room groups (chat id → title,
    members) a test needs."""
    for telegram_id, name, _role, _unit, language in PEOPLE.values():
        emulator.add_user(telegram_id, name, language_code=language.lower())
    for chat_id, (title, members) in rooms.items():
        emulator.add_group(chat_id, title, members=members)
