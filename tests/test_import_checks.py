"""The importer as a coordinator meets it (issue #14): `import --check`, problems with the
file, line and field in the desk's language, phone numbers, likely duplicates by script,
a liaison's stable identity, human values, and an export that adds nothing."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select

from bot import cli
from core.enums import MeetingKind
from storage.dataio import MAX_FILE_BYTES
from storage.dataio import check_file
from storage.dataio import export_document
from storage.dataio import import_document
from storage.dataio import import_file
from storage.dataio import parse_document
from storage.dataio import validate
from storage.dataio import validate_in
from storage.dataio.yamlio import MAX_DEPTH
from storage.db import Database
from storage.models import ChairRotation
from storage.models import DutyRoom
from storage.models import Liaison
from storage.models import Meeting
from storage.models import Roster
from storage.models import Unit
from storage.search.liaisons import search_liaisons
from views.import_report import SHOWN_PROBLEMS
from views.import_report import import_summary
from views.import_report import problem_text
from views.import_report import render_problem

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample.yaml"
DOC = ROOT / "docs" / "data-format.md"

BAD = """\
units:
  - {code: sc, name: 四川省公安厅, short_name: 四川}
liaisons:
  - {unit: 四川省公安厅X, name: 张三}
  - unit: 四川
    name: 李四
    phones: [16O2]
chair_rotations:
  - {zone: 西北, anchor_date: 2025-02-30, order: [四川]}
"""


def cli_import(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
               url: str, *argv: str, language: str | None = None) -> tuple[int, str, str]:
    """`python -m bot import …` through the CLI's main, with the environment it reads."""
    monkeypatch.setenv("DATABASE_URL", url)
    for name in ("BOT_TOKEN", "ADMIN_IDS", "BOT_MODE"):
        monkeypatch.delenv(name, raising=False)
    if language is None:
        monkeypatch.delenv("DEFAULT_LANGUAGE", raising=False)
    else:
        monkeypatch.setenv("DEFAULT_LANGUAGE", language)
    code = cli.main(["import", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


async def count(db: Database, model: Any) -> int:
    async with db.session() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def import_text(db: Database, text: str) -> Any:
    async with db.session() as session:
        return await import_document(session, text, source="test")


async def export(db: Database) -> dict[str, Any]:
    async with db.session() as session:
        return await export_document(session)


def messages(report: Any) -> list[str]:
    return [problem_text(p) for p in report.problems]


# --------------------------------------------------------------------------- --check, lines


def test_check_validates_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    # A database never migrated: --check reads the file alone and writes no schema.
    code, out, err = cli_import(monkeypatch, capsys, url, "--check", str(bad))
    assert code == 1 and "第 4 行" in err and out == ""
    code, out, err = cli_import(monkeypatch, capsys, url, "--check", str(SAMPLE))
    assert code == 0 and "没有问题" in out and err == ""

    code, _, err = cli_import(monkeypatch, capsys, url, str(bad))  # as `import` does
    assert code == 1 and "未做任何修改" in err
    code, out, _ = cli_import(monkeypatch, capsys, url, "--check", str(SAMPLE), language="en")
    assert code == 0 and "no problems" in out and "Nothing was saved" in out
    db = Database(url.replace("sqlite:", "sqlite+aiosqlite:"))

    async def units() -> int:
        try:
            return await count(db, Unit)
        finally:
            await db.dispose()

    assert asyncio.run(units()) == 0  # checked against the database, nothing written
    code, out, _ = cli_import(monkeypatch, capsys, url, str(SAMPLE))
    assert code == 0 and out.startswith("Imported")
    code, out, _ = cli_import(monkeypatch, capsys, url, "--check", str(SAMPLE), language="en")
    assert code == 0 and "create 0, update 0" in out


@pytest.mark.parametrize(("language", "expected"), [
    (None, [
        "{f}，第 4 行：联络员第 1 条，字段 unit：没有名为「四川省公安厅X」的单位",
        "{f}，第 7 行：联络员第 2 条，字段 phones #1：16O2 不是电话号码：含有字母 O",
        "{f}，第 9 行：轮值第 1 条，字段 anchor_date：日期 2025-02-30 不存在：2025 年 2 月只有 "
        "28 天",
        "{f}，第 9 行：轮值第 1 条，字段 zone：没有名为「西北」的协作区",
    ]),
    ("zh-Hant", ["{f}，第 4 行：聯絡員第 1 條，欄位 unit：沒有名為「四川省公安厅X」的單位"]),
    ("en", [
        "{f}, line 4: liaison #1, field unit: no unit named 四川省公安厅X",
        "{f}, line 9: chair rotation #1, field anchor_date: the day 2025-02-30 does not exist: "
        "2025-02 has 28 days",
    ]),
])
def test_problems_name_the_file_line_and_field_in_the_desk_language(
    language: str | None, expected: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    code, _, err = cli_import(monkeypatch, capsys, f"sqlite:///{tmp_path / 'd.db'}",
                              str(bad), language=language)
    assert code == 1
    lines = [line.strip() for line in err.splitlines()]
    assert len(lines) == 5, err  # the header and four problems
    for line in expected:
        assert any(found.startswith(line.format(f=bad)) for found in lines), (line, err)
    assert "liaisons[" not in err and "Traceback" not in err


@pytest.mark.parametrize(("text", "line", "words"), [
    # An unclosed '[' on line 4: PyYAML notices on line 5, the fix is on line 4.
    ("units:\n  - code: sichuan\n    name: 四川省公安厅\n    short_name: [四川\n"
     "branches:\n  - code: x\n", 4, "「[」开始的列表没有用「]」结束"),
    ("units:\n  - code: sc\n    name: 会议: 第一\n", 3, "值中含有「: 」"),
    ("units:\n  - code: a\n    name: b\n  short: c\n", 4, "缩进与上面几行不一致"),
    ("units:\n  - code: 'sichuan\n    name: x\n", 2, "引号没有结束"),
    ("units:\n  - code: a\n    code: b\n", 3, "字段 'code' 在同一条记录中写了两次"),
    ("units:\n\t- code: a\n", 2, "是否用了 Tab"),
])
def test_yaml_syntax_errors_are_reworded_at_the_line_to_fix(
    text: str, line: int, words: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    code, _, err = cli_import(monkeypatch, capsys, f"sqlite:///{tmp_path / 'd.db'}",
                              "--check", str(path))
    assert code == 1
    assert f"{path}，第 {line} 行：" in err and words in err, err
    assert "while parsing" not in err and "expected" not in err


# --------------------------------------------------------------------------- phone numbers


async def test_phone_numbers_are_validated_and_normalised(db: Database) -> None:
    base = "units:\n  - {code: sc, name: 四川省公安厅, short_name: 四川, duty_phone: %s}\n"
    refused = {
        "16O2": "phone_letters", "待补": "phone_not_number", "123": "phone_too_short",
        "'+86 100 0000 01481234'": "phone_too_long", "'+999 5550 0131'": "phone_bad_country",
    }
    for value, key in refused.items():
        report = await import_text(db, base % value)
        assert [p.key for p in report.problems] == [key], (value, messages(report))
        assert report.problems[0].path == "units[0].duty_phone"
    assert await count(db, Unit) == 0

    text = (base % "'０２８－５５５０－０１１０'") + (
        "liaisons:\n"
        "  - {unit: 四川, name: 张伟, phones: [+8610000000148, 028-5550-0131转8021,"
        " '0931 5550  0100 ext. 12', '+86 100 0000 0149']}\n"
        "duty_rooms:\n  - {unit: 四川, title: 四川值班室, phone: +8610000000150}\n"
        "rosters:\n  - duty_room: 四川值班室\n    pattern: daily\n    anchor_date: 2026-11-02\n"
        "    members:\n      - {name: 甲, phone: +8610000000151}\n"
    )
    report = await import_text(db, text)
    assert report.ok, messages(report)
    async with db.session() as session:
        liaison = (await session.execute(select(Liaison))).scalar_one()
        unit = (await session.execute(select(Unit))).scalar_one()
        room = (await session.execute(select(DutyRoom))).scalar_one()
        # An unquoted +86… keeps its '+'; extensions are kept, in one spelling.
        assert liaison.phones == ["+8610000000148", "028-5550-0131 ext. 8021",
                                  "0931 5550 0100 ext. 12", "+86 100 0000 0149"]
        assert unit.duty_phone == "028-5550-0110"
        assert room.phone == "+8610000000150"
        # The digits the search indexes are the author's: a lookup by phone still finds.
        for digits in ("0149", "8021", "+8610000000148"):
            found = await search_liaisons(session, digits)
            assert [hit.liaison_id for hit in found.hits] == [liaison.id], digits
    exported = await export(db)
    assert exported["liaisons"][0]["phones"][0] == "+8610000000148"
    assert exported["rosters"][0]["members"][0]["phone"] == "+8610000000151"


def test_an_unquoted_plus_number_stays_text() -> None:
    document, problems = parse_document("a: +8610000000148\nb: -5\nc: 12\n")
    assert problems == [] and document == {"a": "+8610000000148", "b": -5, "c": 12}


# --------------------------------------------------------------------------- likely duplicates


def test_names_that_differ_only_by_script_are_likely_duplicates() -> None:
    document = {
        "zones": [{"code": "jjj", "name": "京津冀警务协作区", "short_name": "京津冀"},
                  {"code": "jjj2", "name": "京津冀警務協作區", "short_name": "京津冀2"}],
        "units": [{"code": "hebei", "name": "河北省公安厅", "short_name": "河北"},
                  {"code": "hebei-2", "name": "河北省公安廳", "short_name": "冀"}],
        "branches": [{"code": "xingzhen", "name": "刑侦"}, {"code": "xz", "name": "刑偵"}],
        "liaisons": [{"unit": "河北", "branch": "刑侦", "name": "张伟"},
                     {"unit": "河北", "name": "張偉"},
                     {"unit": "冀", "name": "張偉"}],  # another unit: not a duplicate
    }
    found = [problem_text(p) for p in validate(document)]
    assert found == [
        "zones[1].name: 京津冀警務協作區 and 京津冀警务协作区 (zones[0]) differ only in "
        "Simplified/Traditional characters: probably the same zone written twice; keep one "
        "spelling",
        "units[1].name: 河北省公安廳 and 河北省公安厅 (units[0]) differ only in "
        "Simplified/Traditional characters: probably the same unit written twice; keep one "
        "spelling",
        "branches[1].name: 刑偵 and 刑侦 (branches[0]) differ only in Simplified/Traditional "
        "characters: probably the same branch written twice; keep one spelling",
        "liaisons[1].name: 張偉 and 张伟 (liaisons[0]) in the same unit differ only in "
        "Simplified/Traditional characters: probably the same person written twice; keep one "
        "spelling",
    ]


async def test_a_stored_second_spelling_beside_a_record_that_is_not_a_mapping(
    db: Database,
) -> None:
    assert (await import_text(db, "units:\n  - {code: a, name: 甲, short_name: 甲}\n"
                                  "liaisons:\n  - {unit: 甲, name: 张伟}\n")).ok
    async with db.session() as session:
        problems = await validate_in(
            session, {"liaisons": ["张伟", {"unit": "甲", "name": "張偉"}]})
    assert [(p.path, p.key) for p in problems] == [
        ("liaisons[0]", "not_record"), ("liaisons[1].name", "liaison_script_twin_in_database")]


async def test_a_second_spelling_of_a_row_in_the_database_is_refused(db: Database) -> None:
    assert (await import_file(db, SAMPLE)).ok
    report = await import_text(db, (
        "units:\n  - {code: sichuan-2, name: 四川省公安廳, short_name: 蜀2}\n"
        "liaisons:\n  - {unit: 四川, branch: 禁毒, name: 張偉}\n"))
    assert [(p.path, p.key) for p in report.problems] == [
        ("units[0].name", "script_twin_in_database"),
        ("liaisons[0].name", "liaison_script_twin_in_database"),
    ], messages(report)
    assert "代码 sichuan" in render_problem(report.problems[0], "zh-Hans")
    # The same unit under its own code is a rename to the Traditional spelling, not a twin.
    report = await import_text(db, "units:\n  - {code: sichuan, name: 四川省公安廳, "
                                   "short_name: 四川, abbreviation: 川}\n")
    assert report.ok, messages(report)


# --------------------------------------------------------------------------- identity


async def test_a_key_identifies_a_liaison_so_a_corrected_name_updates_the_person(
    db: Database,
) -> None:
    assert (await import_file(db, SAMPLE)).ok
    before = await count(db, Liaison)
    first = await import_text(db, "liaisons:\n  - {key: sc-xz-zhang, unit: 四川, branch: 刑侦, "
                                  "name: 张伟, phones: ['+86 100 0000 0148']}\n")
    assert first.ok and first.counts["liaisons"].updated == 1, import_summary(first)
    async with db.session() as session:
        row = (await session.execute(select(Liaison).where(Liaison.key == "sc-xz-zhang"))
               ).scalar_one()
        ident = row.id
    corrected = await import_text(db, "liaisons:\n  - {key: sc-xz-zhang, unit: 四川, "
                                      "branch: 刑侦, name: 张玮, phones: ['+86 100 0000 0148']}\n")
    assert corrected.ok and corrected.counts["liaisons"].updated == 1
    assert corrected.counts["liaisons"].created == 0
    assert await count(db, Liaison) == before
    async with db.session() as session:
        row = (await session.execute(select(Liaison).where(Liaison.key == "sc-xz-zhang"))
               ).scalar_one()
        assert (row.id, row.name) == (ident, "张玮")
        hits = (await search_liaisons(session, "四川 张玮")).hits
        assert [hit.liaison_id for hit in hits] == [ident]
    exported = [r for r in (await export(db))["liaisons"] if r.get("key")]
    assert exported == [{"key": "sc-xz-zhang", "unit": "四川", "branch": "刑侦", "name": "张玮",
                         "phones": ["+86 100 0000 0148"]}]

    twice = validate({"liaisons": [{"key": "k", "unit": "x", "name": "a"},
                                   {"key": "k", "unit": "x", "name": "b"}]})
    assert "liaisons[1]: duplicate liaison key (also liaisons[0])" in [
        problem_text(p) for p in twice]


async def test_a_telegram_id_identifies_a_liaison_and_retiring_keeps_the_row(
    db: Database,
) -> None:
    units = "units:\n  - {code: sc, name: 四川省公安厅, short_name: 四川}\n"
    assert (await import_text(db, units + "liaisons:\n  - {unit: 四川, name: 李靜, "
                                          "telegram_id: 910000004, phones: [028-5550-0131]}\n")).ok
    report = await import_text(db, "liaisons:\n  - {unit: 四川, name: 李静, "
                                   "telegram_id: 910000004, phones: [028-5550-0131]}\n")
    assert report.ok, messages(report)
    assert (report.counts["liaisons"].created, report.counts["liaisons"].updated) == (0, 1)
    retired = await import_text(db, "liaisons:\n  - {unit: 四川, name: 李静, "
                                    "telegram_id: 910000004, active: false}\n")
    assert retired.ok and retired.counts["liaisons"].updated == 1
    async with db.session() as session:
        row = (await session.execute(select(Liaison))).scalar_one()
        assert (row.name, row.active, row.phones) == ("李静", False, [])
        assert (await search_liaisons(session, "李静")).hits == []
    assert (await export(db))["liaisons"] == [
        {"unit": "四川", "name": "李静", "telegram_id": 910000004, "active": False}]


# --------------------------------------------------------------------------- human values, export


async def test_human_values_and_an_export_that_adds_nothing(db: Database) -> None:
    text = """\
zones:
  - {code: nw, name: 西北警务协作区, short_name: 西北, members: [新疆, 甘肃]}
units:
  - {code: xinjiang, name: 新疆维吾尔自治区公安厅, short_name: 新疆, timezone: Asia/Urumqi}
  - {code: gansu, name: 甘肃省公安厅, short_name: 甘肃}
duty_rooms:
  - {unit: 新疆, title: 新疆值班室, chat_id: -100999}
rosters:
  - duty_room: 新疆值班室
    pattern: day_night
    anchor_date: 2026-11-02
    members: [{name: 甲}, {name: 乙}]
chair_rotations:
  - {zone: 西北, anchor_date: 2024-12-03, order: [甘肃, 新疆]}
meetings:
  - {code: j1, kind: 联席会议, title: 联席会议, zone: 西北, starts_at: 2027-01-12 10:00,
     ends_at: 2027-01-12 12:00, reminder_offsets: 7d 1d 1h}
  - {code: d1, kind: 演練, title: 演练, starts_at: 2027-02-12 10:00,
     ends_at: 2027-02-12 12:00, reminder_offsets: [2d, 90m]}
  - {code: t1, kind: training, title: 培训, starts_at: 2027-03-12 10:00,
     ends_at: 2027-03-12 12:00, reminder_offsets: [30]}
"""
    report = await import_text(db, text)
    assert report.ok, messages(report)
    async with db.session() as session:
        meetings = {m.code: m for m in (await session.execute(select(Meeting))).scalars()}
        roster = (await session.execute(select(Roster))).scalar_one()
        rotation = (await session.execute(select(ChairRotation))).scalar_one()
    assert meetings["j1"].kind is MeetingKind.joint
    assert meetings["j1"].reminder_offsets == [10080, 1440, 60]
    assert meetings["d1"].kind is MeetingKind.drill
    assert meetings["d1"].reminder_offsets == [2880, 90]
    assert meetings["t1"].reminder_offsets == [30]
    assert roster.timezone == "Asia/Urumqi" and rotation.term_months == 12

    exported = await export(db)
    assert exported["rosters"] == [{"duty_room": "新疆值班室", "pattern": "day_night",
                                    "anchor_date": "2026-11-02",
                                    "members": [{"name": "甲"}, {"name": "乙"}]}]
    assert exported["chair_rotations"] == [{"zone": "西北", "anchor_date": "2024-12-03",
                                            "order": ["甘肃", "新疆"]}]
    assert [u.get("level") for u in exported["units"]] == [None, None]
    by_code = {m["code"]: m for m in exported["meetings"]}
    assert "reminder_offsets" not in by_code["j1"]
    assert by_code["d1"]["reminder_offsets"] == ["2d", "90m"]
    assert by_code["t1"]["reminder_offsets"] == ["30m"]
    assert not (await import_document_again(db, exported)).changed

    refused = validate({"meetings": [{"kind": "茶话会", "title": "x",
                                      "starts_at": "2027-01-01 10:00",
                                      "ends_at": "2027-01-01 11:00",
                                      "reminder_offsets": "7d soon"}]})
    assert [p.key for p in refused] == ["not_meeting_kind", "not_offset"]
    assert "联席会议、片会" in render_problem(refused[0], "zh-Hans")


async def import_document_again(db: Database, document: dict[str, Any]) -> Any:
    async with db.session() as session:
        return await import_document(session, document)


# --------------------------------------------------------------------------- the docs


async def test_the_documented_examples_import(db: Database) -> None:
    """Every YAML example in docs/data-format.md is valid against the sample's directory."""
    assert (await import_file(db, SAMPLE)).ok
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 12
    for block in blocks:
        async with db.session() as session:
            problems = await validate_in(session, block)
        assert problems == [], (block, [problem_text(p) for p in problems])



# --------------------------------------------------------------------------- hostile files


def test_a_file_nested_50000_deep_is_refused_not_a_crash(tmp_path: Path) -> None:
    """It used to end the process with a segmentation fault (exit 139) and no word; run
    in a process of its own, so a crash cannot take the tests with it."""
    deep = tmp_path / "deep.yaml"
    deep.write_text("units: " + "[" * 50_000 + "]" * 50_000 + "\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items()
           if key not in ("BOT_TOKEN", "BOT_MODE", "DEFAULT_LANGUAGE")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'd.db'}"
    done = subprocess.run([sys.executable, "-m", "bot", "import", "--check", str(deep)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert done.stderr.splitlines() == [
        f"{deep}：发现 1 个问题，未做任何修改：",
        f"  {deep}，第 1 行：此处列表和记录嵌套超过 {MAX_DEPTH} 层（数据文件只需约六层）："
        "请确认文件是否正确"]


@pytest.mark.parametrize("shape", [
    lambda n: "units: " + "[" * n + "]" * n,
    lambda n: "units:\n" + "".join("  " * i + "-\n" for i in range(n)),
    lambda n: "units: " + "{a: " * n + "}" * n,
    lambda n: "- " * n + "x",
])
def test_nesting_deeper_than_a_data_file_ever_is_refused(shape: Callable[[int], str]) -> None:
    assert parse_document(shape(MAX_DEPTH - 2))[1] == []  # not deep enough to matter
    document, problems = parse_document(shape(MAX_DEPTH + 1))
    assert document is None and [p.key for p in problems] == ["yaml_too_deep"]
    assert problems[0].line is not None


def test_a_file_too_big_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as file:
        file.truncate(MAX_FILE_BYTES + 1024 * 1024)  # sparse: nothing is written
    code, out, err = cli_import(monkeypatch, capsys, f"sqlite:///{tmp_path / 'd.db'}",
                                "--check", str(huge), language="en")
    limit = MAX_FILE_BYTES // 2**20
    assert code == 1 and out == ""
    assert err.splitlines()[1] == (
        f"  {huge}: the file is {limit + 1:,.1f} MB; an import takes at most {limit} MB (the "
        "data file of a whole directory is a few MB): is this the right file?")
    assert [p.key for p in parse_document("#" * (MAX_FILE_BYTES + 1))[1]] == ["too_big"]


@pytest.mark.parametrize(("language", "more"), [
    (None, "……另有 1,050 个问题未列出"), ("zh-Hant", "……另有 1,050 個問題未列出"),
    ("en", "… and 1,050 more problem(s), not listed"),
])
def test_a_file_of_bad_records_lists_fifty_and_counts_the_rest(
    language: str | None, more: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("liaisons:\n" + "- 1\n" * 1_100, encoding="utf-8")
    code, _, err = cli_import(monkeypatch, capsys, f"sqlite:///{tmp_path / 'd.db'}",
                              "--check", str(bad), language=language)
    lines = err.splitlines()
    assert code == 1 and len(lines) == 1 + SHOWN_PROBLEMS + 1
    assert "1,100" in lines[0] and lines[-1] == f"  {more}"
    assert f"{bad}" in lines[SHOWN_PROBLEMS] and "1,050" not in lines[SHOWN_PROBLEMS]
    report = asyncio.run(check_file(bad))  # the report keeps them all
    assert len(report.problems) == 1_100
    last = import_summary(report, "en").splitlines()[-1]
    assert last == "  … and 1,050 more problem(s), not listed"
