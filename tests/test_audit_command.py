"""/audit through the real Application on the sample desk: what an administrator sees
about a person and about a unit, in their language, page by page; a polite answer for
what names nobody; nothing of the log for anyone else."""

from __future__ import annotations

import re
from datetime import UTC
from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select

from storage.models import AuditEntry
from tests.conftest import SAMPLE_ADMIN
from tests.conftest import SAMPLE_OFFICER
from tests.conftest import SAMPLE_SICHUAN_ROOM
from tests.conftest import SAMPLE_STRANGER
from tools.testing import BotHarness

LINE = re.compile(r"^\d+月\d+日（周.） \d\d:\d\d ", re.MULTILINE)


async def views_by_officer(desk: BotHarness) -> int:
    async with desk.db.reading() as session:
        return (await session.execute(select(func.count(AuditEntry.id)).where(
            AuditEntry.action == "contact.view",
            AuditEntry.actor_telegram_id == SAMPLE_OFFICER))).scalar_one()


async def test_an_administrator_sees_who_looked_at_what_and_who_changed_what(
    desk: BotHarness,
) -> None:
    desk.clock.set(datetime.now(UTC))  # type: ignore[attr-defined]  # entries are stamped now
    await desk.send(SAMPLE_OFFICER, "/contact 四川 刑侦")
    asked = await desk.send(SAMPLE_ADMIN, f"/deactivate {SAMPLE_OFFICER}")
    await desk.press(SAMPLE_ADMIN, asked, "确认停用")
    await desk.send(SAMPLE_ADMIN, f"/activate {SAMPLE_OFFICER}")

    person = (await desk.send(SAMPLE_ADMIN, f"/audit {SAMPLE_OFFICER}")).text
    assert "🔎 <b>审计记录</b>：王雅琴（四川）" in person and "共 4 条" in person
    assert "王雅琴（四川） 查看 联络员 张伟（四川省公安厅） <code>contact.view</code>" in person
    assert "周立新（甘肃） 变更 用户 王雅琴 <code>user.deactivate</code>" in person
    assert person.index("user.activate") < person.index("user.deactivate")  # newest first

    unit = (await desk.send(SAMPLE_ADMIN, "/audit 四川 本周")).text
    assert "🔎 <b>审计记录</b>：四川省公安厅" in unit
    assert "王雅琴（四川） 查看 联络员 罗晓燕（四川省公安厅）" in unit
    assert "<code>user.deactivate</code>" in unit  # a change to one of its members
    assert "周立新（甘肃） 查看 用户 王雅琴 <code>audit.view</code>" in unit  # looking is on record

    await desk.press(SAMPLE_ADMIN, await desk.send(SAMPLE_ADMIN, "/lang"), "English")
    english = (await desk.send(SAMPLE_ADMIN, "/audit 四川 week")).text
    assert "🔎 <b>Audit log</b>: 四川省公安厅" in english
    assert "王雅琴 (四川) viewed liaison 张伟 (四川省公安厅) <code>contact.view</code>" in english


async def test_long_records_come_in_pages(desk: BotHarness) -> None:
    desk.clock.set(datetime.now(UTC))  # type: ignore[attr-defined]
    for _ in range(4):
        await desk.send(SAMPLE_OFFICER, "/contact 四川")
    total = await views_by_officer(desk)
    assert total > 15

    first = await desk.send(SAMPLE_ADMIN, f"/audit {SAMPLE_OFFICER}")
    assert len(LINE.findall(first.text)) == 15
    assert f"第 1–15 条，共 {total} 条。" in first.text
    assert [label for label, _ in first.buttons()] == ["更早 ›"]

    older = await desk.press(SAMPLE_ADMIN, first, "更早 ›")
    assert len(LINE.findall(older.text)) == total - 15
    assert f"第 16–{total} 条，共 {total} 条。" in older.text
    assert [label for label, _ in older.buttons()] == ["‹ 较新"]
    # The listing holds still: looking at it (audited, about the officer) adds no line.
    newer = await desk.press(SAMPLE_ADMIN, older, "‹ 较新")
    assert newer.text == first.text
    forged = await desk.press_data(SAMPLE_ADMIN, first.messages[-1], "aud:999:0:1")
    assert forged.alerts == ["此按钮已失效，请重新发起操作。"] and not forged.messages


async def test_what_names_nobody_and_who_may_not_ask_get_a_polite_answer(
    desk: BotHarness,
) -> None:
    usage = (await desk.send(SAMPLE_ADMIN, "/audit")).text
    assert usage.startswith("用法：/audit 用户|单位 [时段]")
    assert "没有名为「火星」的用户或单位" in (await desk.send(SAMPLE_ADMIN, "/audit 火星")).text
    assert "没有名为「@nobody」的用户或单位" in (
        await desk.send(SAMPLE_ADMIN, "/audit @nobody 本月")).text
    assert "月份不存在" in (await desk.send(SAMPLE_ADMIN, "/audit 四川 2026-13")).text

    officer = (await desk.send(SAMPLE_OFFICER, "/audit 四川")).text
    assert "您的角色無權執行此操作" in officer and "審計" not in officer
    stranger = (await desk.send(SAMPLE_STRANGER, "/audit 四川")).text
    assert "尚未登记" in stranger and "审计" not in stranger
    in_room = (await desk.send(SAMPLE_ADMIN, "/audit 四川", chat_id=SAMPLE_SICHUAN_ROOM)).text
    assert "只能在与本助手的私聊中使用" in in_room and "审计记录" not in in_room

    async with desk.db.reading() as session:
        looked = (await session.execute(select(func.count(AuditEntry.id)).where(
            AuditEntry.action == "audit.view"))).scalar_one()
    assert looked == 0  # nothing was shown, so nothing was looked at


async def test_help_lists_audit_for_administrators_only(desk: BotHarness) -> None:
    assert "/audit" in (await desk.send(SAMPLE_ADMIN, "/help")).text
    assert "/audit" not in (await desk.send(SAMPLE_OFFICER, "/help")).text
