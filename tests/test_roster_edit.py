"""/roster edit and /swap on the sample data and the Traditional directory: officers kept
(with their swaps, overrides and phones) when listed again in either script, unknown names
refused with the names they could mean, previews applied only on 确认, dead buttons of
cancelled, confirmed, superseded or outdated confirmations, clashing swaps refused, swaps
with an officer without the bot confirmed by a coordinator, and units with two rooms."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy import select

from core.enums import RosterChangeStatus
from core.enums import ShiftPattern
from core.enums import SwapStatus
from storage.models import AuditEntry
from storage.models import DutyRoom
from storage.models import Roster
from storage.models import RosterChange
from storage.models import RosterMember
from storage.models import ShiftOverride
from storage.models import ShiftSwap
from tests.conftest import HANT_ADMIN
from tests.conftest import HANT_BEIJING_ROOM
from tests.conftest import HANT_BEIJING_TRAFFIC_ROOM
from tests.conftest import HANT_DUTY_OFFICER
from tests.conftest import HANT_SIMPLIFIED_DUTY
from tests.conftest import SAMPLE_ADMIN
from tests.conftest import SAMPLE_STRANGER
from tools.testing import BotHarness
from tools.testing import Sent

# data/sample.yaml: 甘肃's daily roster from 2 November 08:30 — 张伟, 马建军, 何文静, 冯海涛,
# 杨帆, 马占林. At SAMPLE_NOW (Wednesday 25 November, 11:00) 马占林 is on duty; then
# 张伟 26th, 马建军 27th, 何文静 28th, 冯海涛 29th, 杨帆 30th, 马占林 1 Dec, 张伟 2 Dec.
GANSU_ROOM = -1001000000101
ZHANG = 910000008  # 张伟, duty officer of 甘肃, on the roster
MA = 910000002  # 马建军, coordinator of 甘肃, on the roster
ORDER = ["张伟", "马建军", "何文静", "冯海涛", "杨帆", "马占林"]


def gansu(desk: BotHarness) -> BotHarness:
    desk.emulator.add_user(ZHANG, "张伟")
    desk.emulator.add_user(MA, "马建军")
    desk.emulator.add_group(GANSU_ROOM, "甘肃省公安厅指挥中心值班室",
                            members=[ZHANG, MA, SAMPLE_ADMIN])
    return desk


async def nothing_previewed(desk: BotHarness, refused: Sent) -> None:
    """A refused /roster edit offers no buttons, previews nothing, changes nothing."""
    assert not refused.buttons()
    assert await names_of(desk, GANSU_ROOM) == ORDER
    assert await audit_count(desk, "roster.change.preview") == 0


async def members_of(desk: BotHarness, chat_id: int) -> list[RosterMember]:
    async with desk.db.session() as session:
        rows = await session.execute(
            select(RosterMember).join(Roster, Roster.id == RosterMember.roster_id)
            .join(DutyRoom, DutyRoom.id == Roster.duty_room_id)
            .where(DutyRoom.chat_id == chat_id).order_by(RosterMember.position))
        return list(rows.scalars())


async def names_of(desk: BotHarness, chat_id: int) -> list[str]:
    return [m.name for m in await members_of(desk, chat_id)]


async def audit_count(desk: BotHarness, action: str) -> int:
    async with desk.db.session() as session:
        return (await session.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == action))).scalar_one()


async def swap_request(desk: BotHarness, chat_id: int) -> Sent:
    sent = await desk.deliver()
    return Sent([c for c in sent.messages if c.chat_id == chat_id])


# --------------------------------------------------------------------------- officers


async def test_listing_the_officers_again_in_the_other_script_keeps_swaps_overrides_phones(
    hant_desk: BotHarness,
) -> None:
    desk = hant_desk
    # 李曉東 (5 December) and 吳海燕 (6 December) swap; 7 December goes to 李曉東.
    await desk.send(HANT_DUTY_OFFICER, "/swap 12-5 吳海燕 12-6", chat_id=HANT_BEIJING_ROOM)
    request = await swap_request(desk, HANT_BEIJING_ROOM)
    assert "换班已确认" in (await desk.press(HANT_SIMPLIFIED_DUTY, request, "同意")).text
    await desk.send(HANT_SIMPLIFIED_DUTY, "/roster edit override 12-7 李晓东 培训",
                    chat_id=HANT_BEIJING_ROOM)
    before = [(m.id, m.name, m.phone, m.telegram_user_id)
              for m in await members_of(desk, HANT_BEIJING_ROOM)]

    # 吴海燕 writes in Simplified, the roster is in Traditional: the same three people.
    preview = await desk.send(HANT_SIMPLIFIED_DUTY, "/roster edit officers 李晓东, 吴海燕, 施振华",
                              chat_id=HANT_BEIJING_ROOM)
    assert "值班人员：李曉東、吳海燕、施振華" in preview.text
    assert "12月5日（周六） 08:30 <b>吳海燕</b> （调班）" in preview.text
    done = await desk.press(HANT_SIMPLIFIED_DUTY, preview, "确认")
    assert "值班表已更新" in done.text
    assert "12月6日（周日） 08:30 <b>李曉東</b> （调班）" in done.text
    assert "12月7日（周一） 08:30 <b>李曉東</b> （调班）" in done.text

    after = [(m.id, m.name, m.phone, m.telegram_user_id)
             for m in await members_of(desk, HANT_BEIJING_ROOM)]
    assert after == before and after[0][2] == "+86 100 0000 0601"
    async with desk.db.session() as session:
        swap = (await session.execute(select(ShiftSwap))).scalar_one()
        overrides = (await session.execute(select(ShiftOverride))).scalars().all()
    assert swap.status is SwapStatus.confirmed and len(overrides) == 3


async def test_a_name_that_is_no_person_of_the_unit_is_refused_with_the_closest_names(
    desk: BotHarness,
) -> None:
    gansu(desk)
    refused = await desk.send(MA, "/roster edit officers 张伟, 马建军, 何文清, 冯海涛, 王五",
                              chat_id=GANSU_ROOM)
    assert "「何文清」不是甘肃的已知人员" in refused.text and "您是否指：何文静" in refused.text
    assert "「王五」不是甘肃的已知人员" in refused.text and "没有相近的姓名" in refused.text
    await nothing_previewed(desk, refused)

    # A user of the unit (周立新) is a known person: linked to the account.
    preview = await desk.send(MA, "/roster edit officers 张伟, 马建军, 何文静, 周立新",
                              chat_id=GANSU_ROOM)
    assert "值班人员：张伟、马建军、何文静、周立新" in preview.text
    await desk.press(MA, preview, "确认")
    members = await members_of(desk, GANSU_ROOM)
    assert [m.name for m in members] == ["张伟", "马建军", "何文静", "周立新"]
    assert members[3].telegram_user_id == SAMPLE_ADMIN


async def test_a_pattern_change_is_previewed_and_written_only_on_confirm(
    desk: BotHarness,
) -> None:
    gansu(desk)
    preview = await desk.send(MA, "/roster edit pattern day_night 08:00 20:00",
                              chat_id=GANSU_ROOM)
    assert "修改预览" in preview.text and "白班夜班，08:00、20:00 交接" in preview.text
    lines = [line for line in preview.text.splitlines() if "<b>" in line and "–" in line]
    assert len(lines) == 8 and "（当前班次）" in lines[0]
    assert [label for label, _ in preview.buttons()] == ["✅ 确认", "✖️ 取消"]
    async with desk.db.session() as session:
        roster = (await session.execute(select(Roster).join(DutyRoom).where(
            DutyRoom.chat_id == GANSU_ROOM))).scalar_one()
        assert roster.pattern is ShiftPattern.daily
    assert "24 小时班" in (await desk.send(MA, "/roster", chat_id=GANSU_ROOM)).text

    done = await desk.press(MA, preview, "确认")
    assert "值班表已更新" in done.text and "08:00–20:00" in done.text
    async with desk.db.session() as session:
        roster = (await session.execute(select(Roster).join(DutyRoom).where(
            DutyRoom.chat_id == GANSU_ROOM))).scalar_one()
        assert roster.pattern is ShiftPattern.day_night
        assert roster.shift_starts == ["08:00", "20:00"]
    for action in ("roster.change.preview", "roster.change.confirmed", "roster.update"):
        assert await audit_count(desk, action) == 1, action


# --------------------------------------------------------------------------- dead buttons


async def test_confirm_after_cancel_is_dead(desk: BotHarness) -> None:
    gansu(desk)
    preview = await desk.send(MA, "/roster edit officers 马建军, 张伟, 何文静",
                              chat_id=GANSU_ROOM)
    cancelled = await desk.press(MA, preview, "取消")
    assert "已取消，值班表未作修改" in cancelled.text
    late = await desk.press(MA, preview, "确认")
    assert late.alerts and "该修改已取消" in late.alerts[0] and not late.messages
    assert await names_of(desk, GANSU_ROOM) == ORDER
    assert await audit_count(desk, "roster.change.cancelled") == 1
    assert await audit_count(desk, "roster.members") == 0


async def test_confirm_twice_applies_once(desk: BotHarness) -> None:
    gansu(desk)
    preview = await desk.send(MA, "/roster edit officers 马建军, 张伟, 何文静",
                              chat_id=GANSU_ROOM)
    await desk.press(MA, preview, "确认")
    again = await desk.press(ZHANG, preview, "确认")
    assert again.alerts and "已确认生效" in again.alerts[0] and not again.messages
    undo = await desk.press(MA, preview, "取消")
    assert undo.alerts and "已确认生效" in undo.alerts[0]
    assert await names_of(desk, GANSU_ROOM) == ["马建军", "张伟", "何文静"]
    assert await audit_count(desk, "roster.members") == 1


async def test_a_preview_superseded_by_a_newer_edit_is_dead(desk: BotHarness) -> None:
    gansu(desk)
    first = await desk.send(MA, "/roster edit officers 马建军, 张伟", chat_id=GANSU_ROOM)
    second = await desk.send(ZHANG, "/roster edit officers 张伟, 何文静", chat_id=GANSU_ROOM)
    old = await desk.press(MA, first, "确认")
    assert old.alerts and "已被更新的修改取代" in old.alerts[0]
    assert await names_of(desk, GANSU_ROOM) == ORDER
    await desk.press(ZHANG, second, "确认")
    assert await names_of(desk, GANSU_ROOM) == ["张伟", "何文静"]
    async with desk.db.session() as session:
        statuses = list((await session.execute(
            select(RosterChange.status).order_by(RosterChange.id))).scalars())
    assert statuses == [RosterChangeStatus.superseded, RosterChangeStatus.confirmed]


async def test_a_preview_of_a_roster_changed_since_is_dead(desk: BotHarness) -> None:
    gansu(desk)
    preview = await desk.send(MA, "/roster edit officers 马建军, 张伟, 何文静, 冯海涛",
                              chat_id=GANSU_ROOM)
    await desk.send(ZHANG, "/roster edit override 11-28 冯海涛", chat_id=GANSU_ROOM)
    stale = await desk.press(MA, preview, "确认")
    assert stale.alerts and "预览后值班表已有变化" in stale.alerts[0]
    assert await names_of(desk, GANSU_ROOM) == ORDER
    async with desk.db.session() as session:
        change = (await session.execute(select(RosterChange))).scalar_one()
    assert change.status is RosterChangeStatus.pending


async def test_agree_after_a_swap_was_withdrawn_is_dead(desk: BotHarness) -> None:
    gansu(desk)
    await desk.send(ZHANG, "/swap 11-26 马建军 11-27", chat_id=GANSU_ROOM)
    request = await swap_request(desk, GANSU_ROOM)
    assert "已撤回" in (await desk.press(ZHANG, request, "拒绝")).text
    late = await desk.press(MA, request, "同意")
    assert late.alerts and "该换班申请已撤回" in late.alerts[0] and not late.messages
    declined = await desk.press(MA, request, "拒绝")
    assert declined.alerts and "该换班申请已撤回" in declined.alerts[0]
    async with desk.db.session() as session:
        assert not (await session.execute(select(ShiftOverride))).scalars().all()
        assert (await session.execute(select(ShiftSwap.status))).scalar_one() \
            is SwapStatus.cancelled


async def test_agree_after_a_swap_was_declined_is_dead(desk: BotHarness) -> None:
    gansu(desk)
    await desk.send(ZHANG, "/swap 11-26 马建军 11-27", chat_id=GANSU_ROOM)
    request = await swap_request(desk, GANSU_ROOM)
    await desk.press(MA, request, "拒绝")
    late = await desk.press(SAMPLE_ADMIN, request, "同意")
    assert late.alerts and "该换班申请已被拒绝" in late.alerts[0]
    async with desk.db.session() as session:
        assert not (await session.execute(select(ShiftOverride))).scalars().all()


# --------------------------------------------------------------------------- swaps


async def test_duplicate_and_overlapping_swaps_are_refused(desk: BotHarness) -> None:
    gansu(desk)
    assert "已发起换班申请" in (await desk.send(ZHANG, "/swap 11-26 马建军 11-27",
                                          chat_id=GANSU_ROOM)).text
    again = await desk.send(ZHANG, "/swap 11-26 马建军 11-27", chat_id=GANSU_ROOM)
    assert "已有相同的换班申请（待确认）" in again.text
    overlapping = await desk.send(ZHANG, "/swap 11-26 何文静 11-28", chat_id=GANSU_ROOM)
    assert "该班次已在另一换班申请中（待确认）" in overlapping.text
    request = await swap_request(desk, GANSU_ROOM)
    await desk.press(MA, request, "同意")
    # 马建军 now holds 26 November; that shift is in a confirmed swap.
    confirmed = await desk.send(MA, "/swap 11-26 何文静 11-28", chat_id=GANSU_ROOM)
    assert "该班次已在另一换班申请中（已确认）" in confirmed.text
    async with desk.db.session() as session:
        assert len((await session.execute(select(ShiftSwap))).scalars().all()) == 1


async def test_a_swap_with_an_officer_without_the_bot_is_confirmed_by_a_coordinator(
    desk: BotHarness,
) -> None:
    gansu(desk)
    # A Telegram id without an account on the desk is no way to answer either.
    preview = await desk.send(MA, f"/roster edit officers 张伟, 马建军, 何文静 {SAMPLE_STRANGER}, "
                              "冯海涛, 杨帆, 马占林", chat_id=GANSU_ROOM)
    await desk.press(MA, preview, "确认")
    asked = await desk.send(ZHANG, "/swap 12-2 何文静", chat_id=GANSU_ROOM)
    assert "何文静未使用本机器人，须由协调员确认" in asked.text
    sent = await desk.deliver()
    room = [c for c in sent.messages if c.chat_id == GANSU_ROOM]
    assert room and "须由协调员确认" in room[0].params["text"]
    # The unit's coordinator (马建军) and administrator (周立新) are asked privately.
    private = {c.chat_id: c for c in sent.messages if c.chat_id > 0}
    assert set(private) == {MA, SAMPLE_ADMIN}
    officer = await desk.press(ZHANG, room[0], "同意")
    assert officer.alerts and "只有被申请的值班员或协调员" in officer.alerts[0]
    confirmed = await desk.press(MA, private[MA], "同意")
    assert "换班已确认" in confirmed.text
    roster = await desk.send(ZHANG, "/roster", chat_id=GANSU_ROOM)
    assert "12月2日（周三） 08:30 <b>何文静</b> （调班）" in roster.text


# --------------------------------------------------------------------------- two rooms


async def test_a_unit_with_two_rooms_edits_the_room_named_or_the_room_it_is_in(
    hant_desk: BotHarness,
) -> None:
    desk = hant_desk
    asked = await desk.send(HANT_ADMIN, "/roster edit officers 孔令輝, 張德勝")
    assert "請寫明要修改哪個值班室" in asked.text
    assert "北京市公安局指揮中心值班室" in asked.text and "交管指揮中心值班室" in asked.text
    assert not asked.buttons()

    preview = await desk.send(HANT_ADMIN, "/roster edit 交管指挥中心值班室 officers 孔令輝, 張德勝")
    assert "北京市公安局交管指揮中心值班室" in preview.text and "孔令輝、張德勝" in preview.text
    await desk.press(HANT_ADMIN, preview, "確認")
    assert await names_of(desk, HANT_BEIJING_TRAFFIC_ROOM) == ["孔令輝", "張德勝"]
    assert await names_of(desk, HANT_BEIJING_ROOM) == ["李曉東", "吳海燕", "施振華"]

    # In a duty room's chat, that room.
    here = await desk.send(HANT_ADMIN, "/roster edit officers 張德勝, 孔令輝",
                           chat_id=HANT_BEIJING_TRAFFIC_ROOM)
    assert "北京市公安局交管指揮中心值班室" in here.text
    await desk.press(HANT_ADMIN, here, "確認")
    assert await names_of(desk, HANT_BEIJING_TRAFFIC_ROOM) == ["張德勝", "孔令輝"]
    assert await names_of(desk, HANT_BEIJING_ROOM) == ["李曉東", "吳海燕", "施振華"]


async def test_a_swap_in_private_goes_to_the_room_whose_roster_the_officer_is_on(
    hant_desk: BotHarness,
) -> None:
    desk = hant_desk
    preview = await desk.send(HANT_ADMIN, "/roster edit officers 張德勝, 孔令輝, 趙國強",
                              chat_id=HANT_BEIJING_TRAFFIC_ROOM)
    await desk.press(HANT_ADMIN, preview, "確認")
    # Day/night from 2 November 08:00: 3 December's day shift is 趙國強's.
    asked = await desk.send(HANT_ADMIN, "/swap 12-3 08:00 張德勝")
    assert "已發起換班申請" in asked.text and "張德勝未使用本機器人" in asked.text
    sent = await desk.deliver()
    assert [c.chat_id for c in sent.messages if c.chat_id < 0] == [HANT_BEIJING_TRAFFIC_ROOM]


async def test_an_officers_phone_is_checked_like_the_directorys(desk: BotHarness) -> None:
    """The same rule as the import (core.phones): a number too short is refused with why
    and changes nothing; full-width digits are made plain."""
    gansu(desk)
    short = await desk.send(MA, "/roster edit officers 张伟 +86 138, 马建军, 何文静",
                            chat_id=GANSU_ROOM)
    assert "值班员「张伟」的电话有误" in short.text and "太短" in short.text
    await nothing_previewed(desk, short)

    preview = await desk.send(MA, "/roster edit officers 张伟 ０９３１-５５５０-０１０１, 马建军",
                              chat_id=GANSU_ROOM)
    await desk.press(MA, preview, "确认")
    members = await members_of(desk, GANSU_ROOM)
    assert members[0].phone == "0931-5550-0101"


async def test_officers_numbers_are_found_as_people_type_them(desk: BotHarness) -> None:
    """libphonenumber finds each officer's number in the text, however it is grouped: a
    mobile in groups or in one run (eleven digits: a number to dial, not a Telegram id),
    a landline with its extension; a bare shorter run stays a Telegram id. Two numbers
    run together, or too few digits, are refused with why and change nothing."""
    gansu(desk)
    two = await desk.send(MA, "/roster edit officers 张伟 138 0013 8000 139 0013 9000, 马建军",
                          chat_id=GANSU_ROOM)
    assert "值班员「张伟」的电话有误：138 0013 8000 139 0013 9000 不是电话号码" in two.text
    await nothing_previewed(desk, two)
    short = await desk.send(MA, "/roster edit officers 张伟 138, 马建军", chat_id=GANSU_ROOM)
    assert "值班员「张伟」的电话有误" in short.text and "太短" in short.text
    await nothing_previewed(desk, short)

    preview = await desk.send(
        MA, "/roster edit officers 张伟 138 0013 8000, 马建军 13800138001 910000002, "
            "何文静 0931 5550 0103 转 12", chat_id=GANSU_ROOM)
    await desk.press(MA, preview, "确认")
    members = await members_of(desk, GANSU_ROOM)
    assert [(m.name, m.phone) for m in members] == [
        ("张伟", "138 0013 8000"), ("马建军", "13800138001"), ("何文静", "0931 5550 0103 ext. 12")]
    assert [m.telegram_user_id for m in members][1:] == [910000002, None]
