"""Import and export of the YAML data file, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from datetime import UTC
from datetime import date
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core.enums import AgreementStatus
from core.enums import MeetingKind
from core.enums import ShiftPattern
from core.enums import UnitLevel
from storage.dataio import SECTIONS
from storage.dataio import dump_document
from storage.dataio import export_document
from storage.dataio import export_file
from storage.dataio import import_document
from storage.dataio import import_file
from storage.dataio import parse_document
from storage.dataio import validate
from storage.dataio import validate_in
from storage.db import Database
from storage.models import Agreement
from storage.models import AgreementParty
from storage.models import AuditEntry
from storage.models import Base
from storage.models import Branch
from storage.models import ChairRotation
from storage.models import ChairRotationEntry
from storage.models import Clause
from storage.models import ClauseMechanism
from storage.models import ClauseSearchRow
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import LiaisonSearchRow
from storage.models import Mechanism
from storage.models import Meeting
from storage.models import MeetingParticipant
from storage.models import Roster
from storage.models import RosterMember
from storage.models import Unit
from storage.models import User
from storage.models import Zone
from storage.models import ZoneMembership
from views.import_report import import_summary
from views.import_report import problem_message
from views.import_report import problem_text

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.yaml"
COUNTED_MODELS = (
    Zone, ZoneMembership, Unit, Branch, Mechanism, User, Liaison, DutyRoom, Roster, RosterMember,
    ChairRotation, ChairRotationEntry, Agreement, AgreementParty, Clause, ClauseMechanism,
    Meeting, MeetingParticipant,
)


def sample() -> dict[str, Any]:
    document, problems = parse_document(SAMPLE.read_text(encoding="utf-8"))
    assert problems == []
    return document


async def row_counts(db: Database) -> dict[str, int]:
    async with db.session() as session:
        return {
            model.__tablename__: (
                await session.execute(select(func.count()).select_from(model))
            ).scalar_one()
            for model in COUNTED_MODELS
        }


async def import_doc(db: Database, document: Any) -> Any:
    async with db.session() as session:
        return await import_document(session, document, source="test")


async def export_doc(db: Database) -> dict[str, Any]:
    async with db.session() as session:
        return await export_document(session)


async def empty_database(db: Database) -> None:
    async with db.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "data_epoch":  # its one row is the schema's, not data
                await session.execute(table.delete())


def messages(problems: list[Any]) -> list[str]:
    return [problem_text(p) for p in problems]


# --------------------------------------------------------------------------- the sample


def test_sample_is_rich_enough() -> None:
    document = sample()
    assert validate(document) == []
    assert len(document["zones"]) == 3
    assert len(document["branches"]) >= 10
    assert len(document["liaisons"]) >= 90
    assert len(document["duty_rooms"]) >= 8
    assert len(document["rosters"]) >= 4
    assert {r["pattern"] for r in document["rosters"]} == {p.value for p in ShiftPattern}
    assert any(r["timezone"] == "Asia/Urumqi" for r in document["rosters"])
    assert {m["kind"] for m in document["meetings"]} == {k.value for k in MeetingKind}
    clauses = [c for a in document["agreements"] for c in a["clauses"]]
    assert 35 <= len(clauses) <= 50
    assert all(30 <= len(c["text"]) <= 150 for c in clauses)
    assert sum(1 for lia in document["liaisons"] if lia["name"] == "张伟") >= 3
    units_with_liaisons = {lia["unit"] for lia in document["liaisons"]}
    members = {u for z in document["zones"] for u in z.get("members", []) + z.get("partners", [])}
    assert members <= units_with_liaisons
    for meeting in document["meetings"]:
        assert "2026-12-01" <= meeting["starts_at"] < "2027-04-01"


def test_sample_phones_are_fictional() -> None:
    document = sample()
    phones = [p for lia in document["liaisons"] for p in lia.get("phones", [])]
    phones += [m["phone"] for r in document["rosters"] for m in r["members"] if m.get("phone")]
    phones += [u["duty_phone"] for u in document["units"]]
    phones += [r["phone"] for r in document["duty_rooms"]]
    for phone in phones:
        assert phone.startswith("+86 100 0000 ") or "-5550-01" in phone, phone


async def test_sample_imports_with_expected_counts(db: Database) -> None:
    document = sample()
    report = await import_file(db, SAMPLE)
    assert report.problems == [], import_summary(report)
    created = {name: c.created for name, c in report.counts.items()}
    expected = {name: len(document[name]) for name in SECTIONS}
    expected["clauses"] = sum(len(a["clauses"]) for a in document["agreements"])
    assert created == expected
    assert report.total("updated") == report.total("unchanged") == 0
    assert "Imported" in import_summary(report) and "liaisons" in import_summary(report)

    counts = await row_counts(db)
    assert counts["liaisons"] == len(document["liaisons"])
    assert counts["clauses"] == expected["clauses"]
    async with db.session() as session:
        units = {u.code: u for u in (await session.execute(select(Unit))).scalars()}
        assert units["xinjiang"].timezone == "Asia/Urumqi"
        assert units["sichuan"].name == "四川省公安厅" and units["sichuan"].abbreviation == "川"
        assert units["zhangye"].parent_id == units["gansu"].id
        assert units["zhangye"].level is UnitLevel.city
        agreements = {
            a.code: a for a in (await session.execute(
                select(Agreement).options(selectinload(Agreement.clauses))
            )).scalars()
        }
        current = agreements["nw-framework"]
        assert current.supersedes_id == agreements["nw-framework-2019"].id
        assert agreements["nw-framework-2019"].status is AgreementStatus.superseded
        assert [c.position for c in current.clauses] == list(range(len(current.clauses)))
        rotation = (await session.execute(
            select(ChairRotation).options(selectinload(ChairRotation.entries))
            .join(Zone).where(Zone.code == "northwest")
        )).scalar_one()
        order = [e.unit_id for e in rotation.entries]
        assert order[1] == units["gansu"].id and order[2] == units["qinghai"].id
        member = (await session.execute(
            select(RosterMember).where(RosterMember.telegram_user_id == 910000008)
        )).scalar_one()
        user = (await session.execute(
            select(User).where(User.telegram_id == 910000008))).scalar_one()
        assert member.user_id == user.id
        audit = (await session.execute(
            select(AuditEntry).where(AuditEntry.action == "data.import"))).scalar_one()
        assert audit.detail["counts"]["liaisons"]["created"] == len(document["liaisons"])


async def test_reimport_changes_nothing(db: Database) -> None:
    first = await import_file(db, SAMPLE)
    assert first.ok
    before = await row_counts(db)
    second = await import_file(db, SAMPLE)
    assert second.ok
    assert second.total("created") == second.total("updated") == 0
    assert second.total("unchanged") == first.total("created")
    assert not second.changed
    assert await row_counts(db) == before


# --------------------------------------------------------------------------- edits


async def test_edited_file_updates_in_place(db: Database) -> None:
    assert (await import_doc(db, sample())).ok
    async with db.session() as session:
        ids = {u.code: u.id for u in (await session.execute(select(Unit))).scalars()}
        meeting = (await session.execute(
            select(Meeting).where(Meeting.code == "sw-drill-2027"))).scalar_one()
        meeting_id, revision = meeting.id, meeting.revision
    before = await row_counts(db)

    document = sample()
    document["units"][9]["duty_phone"] = "028-5550-0199"            # 四川
    document["liaisons"][0]["phones"] = ["+86 100 0000 0999"]
    document["liaisons"].append({"unit": "四川", "branch": "网警", "name": "新联络员"})
    nw = next(a for a in document["agreements"] if a["code"] == "nw-framework")
    nw["clauses"][1]["text"] += "必要时联合开展处置演练。"
    del nw["clauses"][-1]                                             # 附则 removed
    drill = next(m for m in document["meetings"] if m["code"] == "sw-drill-2027")
    drill["starts_at"] = "2027-03-19 09:00"
    drill["ends_at"] = "2027-03-19 16:00"
    drill["participants"] = drill["participants"][:3]
    document["rosters"][0]["members"].pop()
    document["zones"][0]["partners"].remove("天津")

    report = await import_doc(db, document)
    assert report.ok, import_summary(report)
    counts = report.counts
    assert (counts["units"].updated, counts["units"].created) == (1, 0)
    assert (counts["liaisons"].updated, counts["liaisons"].created) == (1, 1)
    assert counts["clauses"].updated == 1 and counts["clauses"].removed == 1
    assert counts["agreements"].updated == 1
    assert counts["meetings"].updated == 1 and counts["rosters"].updated == 1
    assert counts["zones"].updated == 1
    assert counts["users"].updated == 0 and counts["users"].unchanged == len(document["users"])

    after = await row_counts(db)
    assert after["liaisons"] == before["liaisons"] + 1
    assert after["clauses"] == before["clauses"] - 1
    assert after["roster_members"] == before["roster_members"] - 1
    assert after["meeting_participants"] == before["meeting_participants"] - 3
    assert after["zone_memberships"] == before["zone_memberships"] - 1
    assert after["units"] == before["units"]
    async with db.session() as session:
        sichuan = await session.get(Unit, ids["sichuan"])
        assert sichuan is not None and sichuan.duty_phone == "028-5550-0199"
        meeting = await session.get(Meeting, meeting_id)
        assert meeting is not None
        assert meeting.starts_at == datetime(2027, 3, 19, 1, 0, tzinfo=UTC)
        assert meeting.revision == revision + 1
        new = (await session.execute(
            select(Liaison).where(Liaison.name == "新联络员"))).scalar_one()
        branch = await session.get(Branch, new.branch_id)
        assert branch is not None and branch.name == "网安"

    again = await import_doc(db, document)
    assert not again.changed


async def test_small_file_refers_to_rows_already_in_the_database(db: Database) -> None:
    assert (await import_doc(db, sample())).ok
    document = {"liaisons": [
        {"unit": "四川省公安厅", "branch": "刑警", "name": "补充联络员", "role": "backup"},
        {"unit": "Sichuan", "branch": "CID", "name": "另一联络员"},
        {"unit": "sichuan", "branch": "xingzhen", "name": "第三联络员"},
    ]}
    async with db.session() as session:
        assert await validate_in(session, document) == []
    assert validate(document) != []  # without the database the names are unknown
    report = await import_doc(db, document)
    assert report.ok and report.counts["liaisons"].created == 3


async def test_import_keeps_the_search_index_in_step(db: Database) -> None:
    assert (await import_doc(db, sample())).ok
    document = {"liaisons": [{"unit": "四川", "branch": "刑侦", "name": "张伟", "active": False,
                              "title": "刑侦总队协作联络科科长"}]}

    async def indexed() -> tuple[int, int, int]:
        async with db.session() as session:
            count = func.count()
            return (
                (await session.execute(select(count).select_from(LiaisonSearchRow))).scalar_one(),
                (await session.execute(select(count).select_from(Liaison)
                                       .where(Liaison.active.is_(True)))).scalar_one(),
                (await session.execute(select(count).select_from(ClauseSearchRow))).scalar_one(),
            )

    rows, active, clause_rows = await indexed()
    assert rows == active > 0 and clause_rows > 0
    report = await import_doc(db, document)  # deactivating a liaison drops it from search
    assert report.ok and report.counts["liaisons"].updated == 1
    rows_after, active_after, _ = await indexed()
    assert rows_after == active_after == active - 1

    edited = sample()
    clause = edited["agreements"][2]["clauses"][7]
    clause["text"] += "必要时运用无人机反制手段。"
    assert (await import_doc(db, edited)).ok
    async with db.session() as session:
        stored = (await session.execute(
            select(Clause).where(Clause.number == clause["number"])
            .join(Agreement).where(Agreement.code == edited["agreements"][2]["code"])
        )).scalar_one()
        docs = (await session.execute(
            select(ClauseSearchRow.doc).where(ClauseSearchRow.clause_id == stored.id)
        )).scalars().all()
    assert docs and any("无人机反制" in doc for doc in docs)


# --------------------------------------------------------------------------- problems


def broken_sample() -> dict[str, Any]:
    document = sample()
    document["liaisons"][12]["unit"] = "四川省公安厅X"
    document["meetings"][2]["starts_at"] = "2026-13-01 09:00"
    document["units"][4]["timezone"] = "Asia/Nowhere"
    document["users"][0]["role"] = "boss"
    document["branches"][1]["code"] = document["branches"][0]["code"]
    document["rosters"][1]["shift_starts"] = ["08:00"]
    document["agreements"][1]["clauses"][2]["mechanisms"] = ["不存在的机制"]
    document["duty_rooms"][0]["chat_id"] = 1234
    document["chair_rotations"][0]["order"].append("陕西")
    document["zones"][0]["colour"] = "red"
    return document


EXPECTED_PROBLEMS = [
    "liaisons[12].unit: no unit named 四川省公安厅X",
    "meetings[2].starts_at: not a date-time (2026-13-01 09:00)",
    "units[4].timezone: unknown time zone (Asia/Nowhere)",
    "users[0].role: must be one of officer, duty_officer, coordinator, admin (got boss)",
    "branches[1].code: duplicate code xingzhen (also branches[0])",
    "rosters[1].shift_starts: a day_night roster has 2 shift start(s), not 1",
    "agreements[1].clauses[2].mechanisms[0]: no mechanism named 不存在的机制",
    "duty_rooms[0].chat_id: not a Telegram group id (negative) (1234)",
    "chair_rotations[0].order[7]: 陕西 is listed twice (also chair_rotations[0].order[0])",
    "zones[0].colour: unknown field",
]


def test_validate_reports_every_problem_with_its_path() -> None:
    found = messages(validate(broken_sample()))
    for expected in EXPECTED_PROBLEMS:
        assert any(m.startswith(expected) for m in found), (expected, found)
    # One report per mistake: a duplicate code or a bad chat id does not make every
    # reference to that branch or room fail as well. Sorted in file order.
    assert len(found) == len(EXPECTED_PROBLEMS), found
    assert found[0].startswith("zones[0]") and found[-1].startswith("meetings[2]")


async def test_bad_file_changes_nothing(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(dump_document(broken_sample()), encoding="utf-8")
    report = await import_file(db, path)
    found = messages(report.problems)
    for expected in EXPECTED_PROBLEMS:
        assert any(m.startswith(expected) for m in found), (expected, found)
    assert "nothing was changed" in import_summary(report)
    assert set((await row_counts(db)).values()) == {0}

    assert (await import_file(db, SAMPLE)).ok
    before = await row_counts(db)
    assert not (await import_file(db, path)).ok
    assert await row_counts(db) == before


async def test_yaml_syntax_error_has_line_and_column(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        "units:\n  - code: sichuan\n    name: 四川省公安厅\n    short_name: [四川\n"
        "branches:\n  - code: x\n",
        encoding="utf-8",
    )
    report = await import_file(db, path)
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.line is not None and problem.line >= 4 and problem.column is not None
    assert problem_text(problem).startswith(f"line {problem.line}, column {problem.column}: ")
    assert set((await row_counts(db)).values()) == {0}


def test_duplicate_yaml_keys_are_errors() -> None:
    problems = validate("units:\n  - code: a\n    code: b\n    name: X\n    short_name: X\n")
    assert len(problems) == 1 and problems[0].line == 3
    assert "duplicate key 'code'" in problem_message(problems[0], "en", for_people=False)


def test_yaml_keeps_times_dates_and_phones_as_text() -> None:
    document, problems = parse_document(
        "rosters:\n  - shift_starts: [08:00, 20:00]\n    anchor_date: 2026-11-02\n"
        "    phone: 0931-5550-0100\n    code: 010\n"
    )
    assert problems == []
    roster = document["rosters"][0]
    assert roster["shift_starts"] == ["08:00", "20:00"]
    assert roster["anchor_date"] == "2026-11-02" and roster["code"] == "010"


def test_references_must_resolve_and_be_unambiguous() -> None:
    document = {
        "units": [
            {"code": "cy-bj", "name": "北京市公安局朝阳分局", "short_name": "朝阳",
             "level": "county"},
            {"code": "cy-ln", "name": "朝阳市公安局", "short_name": "朝阳", "level": "city"},
            {"code": "loop-a", "name": "甲", "short_name": "甲", "parent": "乙"},
            {"code": "loop-b", "name": "乙", "short_name": "乙", "parent": "甲"},
        ],
        "liaisons": [
            {"unit": "朝阳", "name": "甲"},
            {"unit": "朝阳市公安局", "name": "乙"},
            {"unit": "cy-bj", "name": "丙", "branch": "刑侦"},
        ],
    }
    found = messages(validate(document))
    assert any(m.startswith("liaisons[0].unit: 朝阳 is ambiguous") for m in found), found
    assert not any(m.startswith("liaisons[1]") for m in found)
    assert "liaisons[2].branch: no branch named 刑侦" in found
    assert any(m.startswith("units[2].parent: units form a loop") for m in found)


def test_missing_and_wrongly_typed_fields() -> None:
    document = {
        "units": [{"code": "Bad Code", "name": 5, "short_name": ""}],
        "meetings": [{"kind": "party", "title": "x", "starts_at": "2027-01-02 10:00",
                      "ends_at": "2027-01-02 09:00"},
                     {"kind": "joint", "title": "y", "starts_at": "2027-01-02 10:00",
                      "ends_at": "2027-01-02 12:00", "reminder_offsets": [60, "soon"]}],
        "users": "everyone",
        "rosters": [{"duty_room": "nowhere", "pattern": "weekly", "anchor_date": "2026/11/02",
                     "members": []}],
    }
    found = messages(validate(document))
    for expected in [
        "units[0].code: not a code (Bad Code)",
        "units[0].short_name: required",
        "meetings[0].kind: must be one of joint, area, regular, drill, training (got party)",
        "meetings[1].reminder_offsets[1]: soon is not a reminder time",
        "users: must be a list of records",
        "rosters[0].anchor_date: not a date (2026/11/02)",
        "rosters[0].members: needs at least 1 item(s)",
    ]:
        assert any(m.startswith(expected) for m in found), (expected, found)
    ends = {"title": "x", "kind": "joint", "starts_at": "2027-01-02 10:00",
            "ends_at": "2027-01-02 09:00"}
    assert "meetings[0].ends_at: must be after starts_at" in messages(
        validate({"meetings": [ends]}))


# --------------------------------------------------------------------------- time zones


def test_time_zones_are_checked() -> None:
    unit = {"code": "kashgar", "name": "喀什地区公安局", "short_name": "喀什"}
    assert validate({"units": [{**unit, "timezone": "Asia/Urumqi"}]}) == []
    found = messages(validate({"units": [{**unit, "timezone": "Asia/Kashgar-Not"}]}))
    assert found and found[0].startswith("units[0].timezone: unknown time zone (Asia/Kashgar-Not)")
    found = messages(validate({"units": [{**unit, "timezone": "UTC+8"}]}))
    assert found and found[0].startswith("units[0].timezone: unknown time zone")


async def test_meeting_times_survive_the_time_zone_conversion(db: Database) -> None:
    base = sample()
    document = {
        "units": base["units"][:6],
        "meetings": [
            {"code": "urumqi", "kind": "training", "title": "乌鲁木齐培训",
             "starts_at": "2027-01-12 10:00", "ends_at": "2027-01-14 18:00",
             "timezone": "Asia/Urumqi", "participants": ["新疆", "兵团"]},
            {"code": "default-zone", "kind": "regular", "title": "例会",
             "starts_at": "2027-01-08 10:00", "ends_at": "2027-01-08 11:30"},
            {"code": "offset", "kind": "area", "title": "片会",
             "starts_at": "2027-02-01T10:00+08:00", "ends_at": "2027-02-01 12:00",
             "timezone": "Asia/Urumqi", "reminder_offsets": []},
        ],
    }
    assert (await import_doc(db, document)).ok
    async with db.session() as session:
        stored = {m.code: m for m in (await session.execute(select(Meeting))).scalars()}
    assert stored["urumqi"].starts_at == datetime(2027, 1, 12, 4, 0, tzinfo=UTC)
    assert stored["urumqi"].ends_at == datetime(2027, 1, 14, 12, 0, tzinfo=UTC)
    assert stored["default-zone"].starts_at == datetime(2027, 1, 8, 2, 0, tzinfo=UTC)
    assert stored["default-zone"].timezone is None
    assert stored["default-zone"].reminder_offsets == [10080, 1440, 60]
    assert stored["offset"].starts_at == datetime(2027, 2, 1, 2, 0, tzinfo=UTC)
    assert stored["offset"].ends_at == datetime(2027, 2, 1, 6, 0, tzinfo=UTC)
    assert stored["offset"].reminder_offsets == []

    exported = {m["code"]: m for m in (await export_doc(db))["meetings"]}
    assert exported["urumqi"]["starts_at"] == "2027-01-12 10:00"
    assert exported["urumqi"]["timezone"] == "Asia/Urumqi"
    assert exported["default-zone"]["starts_at"] == "2027-01-08 10:00"
    assert "timezone" not in exported["default-zone"]
    assert "reminder_offsets" not in exported["default-zone"]
    assert exported["offset"]["starts_at"] == "2027-02-01 08:00"  # in the meeting's zone
    assert exported["offset"]["reminder_offsets"] == []
    assert not (await import_doc(db, {"meetings": list(exported.values())})).changed


async def test_roster_time_zone_defaults_to_the_room_then_the_unit(db: Database) -> None:
    document = {
        "units": [{"code": "xinjiang", "name": "新疆维吾尔自治区公安厅", "short_name": "新疆",
                   "timezone": "Asia/Urumqi"}],
        "duty_rooms": [{"unit": "新疆", "title": "新疆值班室", "chat_id": -100999}],
        "rosters": [{"duty_room": "新疆", "pattern": "day_night", "anchor_date": "2026-11-02",
                     "members": [{"name": "甲"}, {"name": "乙"}]}],
    }
    assert (await import_doc(db, document)).ok
    async with db.session() as session:
        roster = (await session.execute(select(Roster))).scalar_one()
    assert roster.timezone == "Asia/Urumqi"
    assert roster.shift_starts == ["08:00", "20:00"]
    assert roster.anchor_date == date(2026, 11, 2)


# --------------------------------------------------------------------------- export


async def test_export_import_round_trip(db: Database, tmp_path: Path) -> None:
    assert (await import_file(db, SAMPLE)).ok
    path = tmp_path / "export.yaml"
    report = await export_file(db, path)
    assert report.problems == [] and report.counts["liaisons"] >= 90
    assert "Exported" in report.summary()
    first = await export_doc(db)
    text = path.read_text(encoding="utf-8")
    assert "四川省公安厅" in text and "\\u" not in text  # allow_unicode

    again = await import_file(db, path)  # the export re-imports unchanged
    assert again.ok and not again.changed, import_summary(again)

    await empty_database(db)
    assert set((await row_counts(db)).values()) == {0}
    fresh = await import_file(db, path)
    assert fresh.ok, import_summary(fresh)
    second = await export_doc(db)
    assert second == first
    assert dump_document(second) == text


async def test_export_follows_the_sample(db: Database) -> None:
    document = sample()
    assert (await import_doc(db, document)).ok
    exported = await export_doc(db)
    assert list(exported) == list(SECTIONS)
    assert [u["code"] for u in exported["units"]] == [u["code"] for u in document["units"]]
    assert exported["zones"][0]["members"] == document["zones"][0]["members"]
    zhangye = next(u for u in exported["units"] if u["code"] == "zhangye")
    assert zhangye["parent"] == "甘肃"
    liaison = exported["liaisons"][0]
    assert liaison["unit"] == "陕西" and liaison["branch"] == "刑侦"
    assert exported["rosters"][0]["anchor_date"] == "2026-11-02"
    nw = next(a for a in exported["agreements"] if a["code"] == "nw-framework")
    assert nw["supersedes"] == "nw-framework-2019" and nw["signed_on"] == "2025-11-06"
    assert validate(copy.deepcopy(exported)) == []


async def test_dry_run_saves_nothing(db: Database) -> None:
    report = await import_file(db, SAMPLE, dry_run=True)
    assert report.ok and report.dry_run and report.total("created") > 0
    assert "dry run" in import_summary(report)
    assert set((await row_counts(db)).values()) == {0}


async def test_empty_document_and_empty_database(db: Database) -> None:
    assert validate({}) == [] and validate("") == []
    exported = await export_doc(db)
    assert exported == {name: [] for name in SECTIONS}
    report = await import_doc(db, exported)
    assert report.ok and not report.changed
    assert messages(validate([1, 2])) == [
        "the file must be a mapping of sections (" + ", ".join(SECTIONS) + ")"
    ]


@pytest.mark.parametrize("value", ["2026-12-03 9:00", "2026-12-03T09:00", "2026-12-03 09:00:00"])
def test_datetime_spellings(value: str) -> None:
    meeting = {"kind": "drill", "title": "t", "starts_at": value, "ends_at": "2026-12-03 10:00"}
    assert validate({"meetings": [meeting]}) == []
