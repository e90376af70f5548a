"""Registration and access control through the real Application and the emulator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select

from core.enums import Role
from storage.access import user_by_telegram_id
from storage.models import AuditEntry
from storage.models import DutyRoom
from storage.models import Invitation
from storage.models import User
from tools.testing import BotHarness

ADMIN_ID = 910000001
OFFICER_ID = 910000050
STRANGER_ID = 910000099
ROOM_ID = -1001000000777


def invitation_code(text: str) -> str:
    return text.split("?start=")[1].split()[0].split("<")[0]


async def user_row(bot: BotHarness, telegram_id: int) -> User | None:
    async with bot.db.session() as session:
        return (
            await session.execute(select(User).where(User.telegram_id == telegram_id))
        ).scalar_one_or_none()


async def invite(bot: BotHarness, unit: str = "四川", role: str = "值班员") -> str:
    sent = await bot.send(ADMIN_ID, f"/invite {unit} {role}")
    assert "?start=" in sent.text, sent.text
    return invitation_code(sent.text)


async def test_invitation_links_an_account_end_to_end(bot: BotHarness) -> None:
    bot.emulator.add_user(OFFICER_ID, "李明")
    code = await invite(bot)

    sent = await bot.send(OFFICER_ID, f"/start {code}")

    assert "登记成功" in sent.text
    assert "四川省公安厅" in sent.text and "值班员" in sent.text
    user = await user_row(bot, OFFICER_ID)
    assert user is not None and user.role is Role.duty_officer
    async with bot.db.session() as session:
        actions = set((await session.execute(select(AuditEntry.action))).scalars())
    assert {"invitation.create", "invitation.redeem"} <= actions
    # The private chat's menu now lists what a duty officer may do, in their language.
    menus = [c for c in bot.emulator.calls if c.method == "setMyCommands"
             and (c.params.get("scope") or {}).get("chat_id") == OFFICER_ID]
    assert menus and any(cmd["command"] == "help" for cmd in menus[-1].params["commands"])


@pytest.mark.parametrize("problem", ["used", "expired", "unknown", "revoked"])
async def test_bad_invitations_get_a_clear_answer_and_change_nothing(
    bot: BotHarness, problem: str
) -> None:
    bot.emulator.add_user(OFFICER_ID, "李明")
    bot.emulator.add_user(STRANGER_ID, "王五")
    code = await invite(bot)
    async with bot.db.session() as session:
        invitation = (await session.execute(select(Invitation))).scalar_one()
        if problem == "expired":
            invitation.expires_at = bot.services.now() - timedelta(minutes=1)
        if problem == "revoked":
            invitation.revoked_at = bot.services.now()
    if problem == "used":
        await bot.send(OFFICER_ID, f"/start {code}")
    if problem == "unknown":
        code = "not-a-real-code"

    sent = await bot.send(STRANGER_ID, f"/start {code}")

    expected = {"used": "已被使用", "expired": "已过期", "unknown": "邀请码无效", "revoked": "撤销"}
    assert expected[problem] in sent.text
    assert await user_row(bot, STRANGER_ID) is None


async def test_unknown_user_sees_an_explanation_and_nothing_else(bot: BotHarness) -> None:
    bot.emulator.add_user(STRANGER_ID, "王五")
    for text in ("/start", "/invite 四川", "/help", "/deactivate 910000001"):
        sent = await bot.send(STRANGER_ID, text)
        assert sent.texts, text
        assert "四川省公安厅" not in sent.text
        assert "?start=" not in sent.text
    sent = await bot.send(STRANGER_ID, "/invite 四川")
    assert "尚未登记" in sent.text
    async with bot.db.session() as session:
        assert (await session.execute(select(func.count(Invitation.id)))).scalar_one() == 0


async def test_help_lists_what_the_role_can_do(bot: BotHarness) -> None:
    bot.emulator.add_user(OFFICER_ID, "李明")
    await bot.send(OFFICER_ID, f"/start {await invite(bot, role='民警')}")

    officer_help = (await bot.send(OFFICER_ID, "/help")).text
    admin_help = (await bot.send(ADMIN_ID, "/help")).text

    assert "/invite" not in officer_help and "/deactivate" not in officer_help
    assert "/invite" in admin_help and "/deactivate" in admin_help
    assert "/lang" in officer_help


@pytest.mark.parametrize(
    ("button", "start_text", "help_text"),
    [
        ("简体中文", "您是", "功能列表"),
        ("繁體中文", "您是", "功能列表"),
        ("English", "You are", "commands"),
    ],
)
async def test_lang_switches_start_and_help(
    bot: BotHarness, button: str, start_text: str, help_text: str
) -> None:
    sent = await bot.send(ADMIN_ID, "/lang")
    switched = await bot.press(ADMIN_ID, sent, button)
    assert switched.texts  # the choice message is edited to confirm

    start = (await bot.send(ADMIN_ID, "/start")).text
    help_ = (await bot.send(ADMIN_ID, "/help")).text
    assert start_text in start and help_text in help_
    if button == "繁體中文":
        assert "說明" not in help_ and "單位" in (await bot.send(ADMIN_ID, "/invite")).text
    admin = await user_row(bot, ADMIN_ID)
    languages = {"简体中文": "zh-Hans", "繁體中文": "zh-Hant", "English": "en"}
    assert admin is not None and admin.language == languages[button]


async def test_unregistered_user_greeted_in_their_telegram_language(bot: BotHarness) -> None:
    bot.emulator.add_user(STRANGER_ID, "John", language_code="en")
    assert "registered officers only" in (await bot.send(STRANGER_ID, "/start")).text


async def test_forged_language_button_changes_nothing(bot: BotHarness) -> None:
    sent = await bot.send(ADMIN_ID, "/lang")
    forged = await bot.press_data(ADMIN_ID, sent.messages[-1], "lang:klingon")
    assert forged.alerts and "失效" in forged.alerts[0]
    admin = await user_row(bot, ADMIN_ID)
    assert admin is not None and admin.language is None


async def test_register_room_in_a_group(bot: BotHarness) -> None:
    bot.emulator.add_user(OFFICER_ID, "李明")
    bot.emulator.add_group(ROOM_ID, "四川省厅指挥中心值班室")
    await bot.send(OFFICER_ID, f"/start {await invite(bot, role='民警')}")

    refused = await bot.send(OFFICER_ID, "/register_room 四川", chat_id=ROOM_ID)
    assert "无权" in refused.text
    private = await bot.send(ADMIN_ID, "/register_room 四川")
    assert "值班室群组" in private.text
    unknown = await bot.send(ADMIN_ID, "/register_room 火星", chat_id=ROOM_ID)
    assert "没有找到" in unknown.text

    done = await bot.send(ADMIN_ID, "/register_room 四川", chat_id=ROOM_ID)
    assert "四川省公安厅" in done.text and "值班室" in done.text
    async with bot.db.session() as session:
        room = (await session.execute(select(DutyRoom))).scalar_one()
        assert room.chat_id == ROOM_ID and room.active
        audit = (
            await session.execute(
                select(AuditEntry).where(AuditEntry.action == "duty_room.register")
            )
        ).scalar_one()
    assert audit.chat_id == ROOM_ID

    conflict = await bot.send(ADMIN_ID, "/register_room 云南", chat_id=ROOM_ID)
    assert "已是" in conflict.text


async def test_deactivated_user_loses_access_at_once(bot: BotHarness) -> None:
    bot.emulator.add_user(OFFICER_ID, "李明")
    await bot.send(OFFICER_ID, f"/start {await invite(bot, role='民警')}")
    assert "您是" in (await bot.send(OFFICER_ID, "/help")).text

    asked = await bot.send(ADMIN_ID, f"/deactivate {OFFICER_ID}")
    assert asked.text.startswith("确认停用 李明（<b>四川省公安厅</b>的民警）的账号吗？")
    done = await bot.press(ADMIN_ID, asked, "确认停用")
    assert "已停用" in done.text

    told = "您的账号已被停用，暂时不能使用本助手。如有疑问，请联系本单位管理员。"
    for text in ("/invite 四川", "/start", "/nosuchcommand", "四川 刑侦"):
        assert (await bot.send(OFFICER_ID, text)).text == told, text
    assert "您是" not in (await bot.send(OFFICER_ID, "/help")).text
    again = await bot.send(ADMIN_ID, f"/deactivate {OFFICER_ID}")
    assert again.text == "李明 的账号本来就已停用，未作修改。"
    assert "已恢复" in (await bot.send(ADMIN_ID, f"/activate {OFFICER_ID}")).text
    assert "您是" in (await bot.send(OFFICER_ID, "/help")).text
    again = await bot.send(ADMIN_ID, f"/activate {OFFICER_ID}")
    assert again.text == "李明 的账号本来就是启用状态，未作修改。"
    async with bot.db.session() as session:
        changes = (await session.execute(select(AuditEntry.action).where(
            AuditEntry.action.in_(["user.activate", "user.deactivate"])).order_by(
                AuditEntry.id))).scalars().all()
    assert changes == ["user.deactivate", "user.activate"]


async def test_coordinator_cannot_invite_administrators(bot: BotHarness) -> None:
    bot.emulator.add_user(OFFICER_ID, "李明")
    await bot.send(OFFICER_ID, f"/start {await invite(bot, role='协调员')}")
    refused = await bot.send(OFFICER_ID, "/invite 云南 管理员")
    assert "无权" in refused.text
    allowed = await bot.send(OFFICER_ID, "/invite 云南 值班员")
    assert "?start=" in allowed.text


async def test_cancel_outside_a_flow_says_there_is_nothing_to_cancel(bot: BotHarness) -> None:
    assert (await bot.send(ADMIN_ID, "/cancel")).text == "当前没有进行中的操作，无需取消。"
    bot.emulator.add_user(STRANGER_ID, "王五")
    bot.emulator.add_group(ROOM_ID, "闲聊群", members=[ADMIN_ID, STRANGER_ID])
    assert "无需取消" in (await bot.send(ADMIN_ID, "/cancel", chat_id=ROOM_ID)).text
    assert (await bot.send(STRANGER_ID, "/cancel", chat_id=ROOM_ID)).messages == []
    assert "尚未登记" in (await bot.send(STRANGER_ID, "/cancel")).text


async def test_an_invitation_asks_an_active_user_before_moving_them(bot: BotHarness) -> None:
    bot.emulator.add_user(OFFICER_ID, "李明")
    await bot.send(OFFICER_ID, f"/start {await invite(bot, '四川', '民警')}")
    same = await bot.send(OFFICER_ID, f"/start {await invite(bot, '四川', '民警')}")
    assert same.text == "您已经是<b>四川省公安厅</b>的民警，无需使用此邀请；邀请码未被使用。"
    code = await invite(bot, "云南", "值班员")
    asked = await bot.send(OFFICER_ID, f"/start {code}")
    assert "您目前是<b>四川省公安厅</b>的民警（李明）" in asked.text
    assert "改为<b>云南省公安厅</b>的值班员" in asked.text
    kept = await bot.press(OFFICER_ID, asked, "取消")
    assert kept.text == "未作变更，您仍是<b>四川省公安厅</b>的民警；邀请码未被使用。"
    late = await bot.press(OFFICER_ID, asked, "确认变更")
    assert late.alerts == ["您已取消「按邀请变更单位和角色」，这个按钮不再起作用，什么也没有改变。"]
    async with bot.db.session() as session:
        user = await user_by_telegram_id(session, OFFICER_ID)
        assert user is not None and user.unit is not None
        assert (user.role, user.unit.name) == (Role.officer, "四川省公安厅")
        assert (await session.execute(select(Invitation).where(
            Invitation.code == code))).scalar_one().used_at is None
    # Asked again, and confirmed: moved, once.
    asked = await bot.send(OFFICER_ID, f"/start {code}")
    moved = await bot.press(OFFICER_ID, asked, "确认变更")
    assert "登记成功" in moved.text and "云南省公安厅" in moved.text and "值班员" in moved.text
    again = await bot.press(OFFICER_ID, asked, "确认变更")
    assert again.alerts == ["这个按钮已经用过（按邀请变更单位和角色），不会再执行一次。"]
    user = await user_row(bot, OFFICER_ID)
    assert user is not None and user.role is Role.duty_officer


async def test_a_cancelled_deactivation_is_dead(bot: BotHarness) -> None:
    bot.emulator.add_user(OFFICER_ID, "李明")
    await bot.send(OFFICER_ID, f"/start {await invite(bot, role='民警')}")
    asked = await bot.send(ADMIN_ID, f"/deactivate {OFFICER_ID}")
    kept = await bot.press(ADMIN_ID, asked, "取消")
    assert kept.text == "未停用，账号保持不变。"
    late = await bot.press(ADMIN_ID, asked, "确认停用")
    assert late.alerts == ["您已取消「停用账号」，这个按钮不再起作用，什么也没有改变。"]
    user = await user_row(bot, OFFICER_ID)
    assert user is not None and user.active
    # Asked twice and answered on the newer: the older is dead, the account changed once.
    older = await bot.send(ADMIN_ID, f"/deactivate {OFFICER_ID}")
    newer = await bot.send(ADMIN_ID, f"/deactivate {OFFICER_ID}")
    assert "已停用" in (await bot.press(ADMIN_ID, newer, "确认停用")).text
    late = await bot.press(ADMIN_ID, older, "确认停用")
    assert late.alerts == ["这个确认已被更新的一条取代（停用账号），请使用最新的那条消息。"]
    async with bot.db.session() as session:
        changes = (await session.execute(select(AuditEntry.action).where(
            AuditEntry.action == "user.deactivate"))).scalars().all()
    assert changes == ["user.deactivate"]


def test_the_confirmation_book_forgets_what_is_over_first() -> None:
    from types import SimpleNamespace

    from handlers import common

    context = SimpleNamespace(user_data={})
    kept = common.offer_confirmation(context, "notice_send")  # type: ignore[arg-type]
    for number in range(common.CONFIRMATIONS_KEPT * 2):
        token = common.offer_confirmation(context, "notice_withdraw", number)  # type: ignore[arg-type]
        common.close_confirmation(context, token, common.CANCELLED)  # type: ignore[arg-type]
    book = context.user_data[common.CONFIRMATIONS]
    assert len(book) == common.CONFIRMATIONS_KEPT
    assert common.confirmation_state(context, kept, "notice_send") == common.OPEN  # type: ignore[arg-type]
    assert common.confirmation_state(context, token, "notice_withdraw") == common.CANCELLED  # type: ignore[arg-type]


async def test_a_refusal_is_the_only_answer(desk: BotHarness) -> None:
    # /meeting is handled ahead of the other groups: its refusal must end the update.
    for text in ("/meeting 1", "/meeting new", "/roster", "/notice"):
        sent = await desk.send(910000099, text)
        assert len(sent.messages) == 1, (text, sent.texts)
