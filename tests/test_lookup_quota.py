"""Lookup quotas and scraping alerts through the real Application on the sample desk, on
SQLite and PostgreSQL: a scripted scraper is refused after its quota of distinct cards,
its zone's coordinators are told once, an administrator's /unblock lets it look up
again at once, and a duty officer's ordinary day never trips anything."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy import select

from storage.models import AuditEntry
from storage.models import OutboxMessage
from tools.testing import BotHarness
from tools.testing import Sent

ADMIN = 910000001  # 周立新, administrator in 甘肃 (西北), zh-Hans
NORTHWEST_COORDINATOR = 910000002  # 马建军, coordinator in 甘肃: 西北, where 四川 is a partner
SOUTHWEST_COORDINATOR = 910000003  # 谭晓东, coordinator in 重庆: 泛西南
SICHUAN_DUTY = 910000004  # 李静, duty officer in 四川, zh-Hans
SCRAPER = 910000007  # 王雅琴, officer in 四川, zh-Hant
SHAANXI_DUTY = 910000013  # 赵磊, duty officer in 陕西 (西北 only), zh-Hans
JIANGSU_OFFICER = 910000011  # 孙浩然, officer in 江苏 (长三角: no coordinator), en

# Provinces with at least five liaisons: a /contact page of five cards each, none shared.
PROVINCES = ["陕西", "甘肃", "青海", "宁夏", "新疆", "兵团", "内蒙古", "北京", "天津", "四川",
             "西藏", "重庆", "贵州", "云南", "上海", "江苏", "浙江", "安徽"]


def add_people(desk: BotHarness) -> None:
    for user_id, name, language in [
        (NORTHWEST_COORDINATOR, "马建军", "zh-hans"), (SOUTHWEST_COORDINATOR, "谭晓东", "zh-hans"),
        (SICHUAN_DUTY, "李静", "zh-hans"), (SHAANXI_DUTY, "赵磊", "zh-hans"),
        (JIANGSU_OFFICER, "Sun Haoran", "en"),
    ]:
        desk.emulator.add_user(user_id, name, language_code=language)


async def alerts(desk: BotHarness) -> list[OutboxMessage]:
    async with desk.db.reading() as session:
        return list((await session.execute(select(OutboxMessage).where(
            OutboxMessage.kind == "lookup_alert").order_by(OutboxMessage.id))).scalars())


async def audited(desk: BotHarness, action: str) -> list[AuditEntry]:
    async with desk.db.reading() as session:
        return list((await session.execute(select(AuditEntry).where(
            AuditEntry.action == action).order_by(AuditEntry.id))).scalars())


async def distinct_cards(desk: BotHarness, telegram_id: int) -> int:
    async with desk.db.reading() as session:
        return (await session.execute(select(func.count(func.distinct(AuditEntry.subject_id)))
                                      .where(AuditEntry.action == "contact.view",
                                             AuditEntry.actor_telegram_id == telegram_id))
                ).scalar_one()


def cards(sent: Sent) -> int:
    return sent.text.count("👤")


async def inline(desk: BotHarness, user_id: int, query: str) -> list[dict[str, Any]]:
    await desk.feed(desk.emulator.make_inline_query_update(user_id, query))
    answer = desk.emulator.calls[-1]
    assert answer.method == "answerInlineQuery"
    return list(answer.params["results"])


async def browse_until_refused(desk: BotHarness, *, every: timedelta) -> tuple[int, Sent]:
    """The scraper asks for one province after another; returns the cards it was shown
    and the first answer that shows none."""
    shown = 0
    for province in PROVINCES:
        sent = await desk.send(SCRAPER, f"/contact {province}")
        if not cards(sent):
            return shown, sent
        assert cards(sent) == 5, sent.text
        shown += cards(sent)
        desk.clock.advance(every)  # type: ignore[attr-defined]
    raise AssertionError("never refused")


async def test_a_slow_scraper_is_refused_after_its_hourly_quota_and_told_once(
    desk: BotHarness,
) -> None:
    add_people(desk)
    shown, refused = await browse_until_refused(desk, every=timedelta(minutes=3))

    # 60 distinct cards in 36 minutes (one province every three: no burst), then nothing.
    assert shown == 60 == await distinct_cards(desk, SCRAPER)
    assert "近一小時內已查看 60 條不同的聯絡方式（上限 60 條）" in refused.text
    assert "11月25日 12:00 起" in refused.text  # the first page leaves the hour (Beijing)
    assert "+86" not in refused.text and "📞" not in refused.text
    [refusal] = await audited(desk, "lookup.refused")
    assert refusal.detail["window"] == "hour" and refusal.detail["count"] == 60

    # More refused lookups of every kind: still one alert episode.
    assert cards(await desk.send(SCRAPER, "/contact 浙江")) == 0
    assert "上限" in (await desk.send(SCRAPER, "安徽 刑偵")).text
    [result] = await inline(desk, SCRAPER, "江苏")
    assert result["title"] == "🚫 已達查詢上限" and "+86" not in str(result)

    # One alert, to each coordinator of 四川's zones (泛西南, and 西北 where it is a
    # partner), in their language and naming the account, the count and the units.
    rows = await alerts(desk)
    assert sorted(r.chat_id for r in rows) == [NORTHWEST_COORDINATOR, SOUTHWEST_COORDINATOR]
    assert len(await audited(desk, "lookup.alert")) == 1
    delivered = await desk.deliver()
    to_coordinator = [m for m in delivered.messages
                      if m.params["chat_id"] == SOUTHWEST_COORDINATOR]
    [alert] = [m.params["text"] for m in to_coordinator]
    assert "查询达到上限" in alert and "王雅琴" in alert and "四川省公安厅民警" in alert
    assert "近一小时内已查看 60 条" in alert and "陕西省公安厅（5）" in alert
    assert "/unblock 910000007" in alert

    # Cards already seen this hour are free: the scraper's own counterparts again.
    again = await desk.send(SCRAPER, "/contact 陕西")
    assert cards(again) == 5 and "上限" not in again.text
    results = await inline(desk, SCRAPER, "四川")  # the first of 四川's cards, seen already
    assert len([r for r in results if r["id"].startswith("l")]) == 4
    assert "quota" not in [r["id"] for r in results]


async def test_the_administrator_lifts_the_block_and_it_is_gone_at_once(
    desk: BotHarness,
) -> None:
    add_people(desk)
    await browse_until_refused(desk, every=timedelta(minutes=3))
    desk.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]

    coordinator = await desk.send(SOUTHWEST_COORDINATOR, "/unblock 910000007")
    assert "您的角色无权" in coordinator.text
    lifted = await desk.send(ADMIN, "/unblock 910000007")
    assert "已解除 王雅琴 的查询限额" in lifted.text and "60/60" in lifted.text
    [entry] = await audited(desk, "lookup.unblock")
    assert entry.actor_telegram_id == ADMIN and entry.subject_id == str(SCRAPER)
    told = await desk.deliver()
    assert any(m.params["chat_id"] == SCRAPER and "已解除您的查詢限額" in m.params["text"]
               for m in told.messages)

    assert cards(await desk.send(SCRAPER, "/contact 浙江")) == 5
    # A new block after the lift is a new episode: the coordinators are told again.
    await browse_until_refused(desk, every=timedelta(seconds=10))
    assert len(await audited(desk, "lookup.alert")) >= 2

    nothing = await desk.send(ADMIN, "/unblock 910000004")
    assert "没有计入限额的查询" in nothing.text
    assert "用法" in (await desk.send(ADMIN, "/unblock")).text
    assert "不能对自己的账号" in (await desk.send(ADMIN, "/unblock 910000001")).text


async def test_a_burst_of_units_alerts_once_under_the_quota(desk: BotHarness) -> None:
    add_people(desk)
    for province in PROVINCES[:12]:
        sent = await desk.send(SHAANXI_DUTY, f"{province} 刑侦")
        assert "上限" not in sent.text
    [alert] = await alerts(desk)
    assert alert.chat_id == NORTHWEST_COORDINATOR  # 陕西 is in 西北 only
    assert "异常查询" in alert.payload["text"] and "12 个不同单位" in alert.payload["text"]
    for province in PROVINCES[12:]:
        await desk.send(SHAANXI_DUTY, f"/contact {province} 刑侦")
    assert len(await alerts(desk)) == 1


async def test_paging_through_a_broad_search_alerts(desk: BotHarness) -> None:
    add_people(desk)
    page = await desk.send(SHAANXI_DUTY, "/contact 刑侦")
    assert "第 1–5 位" in page.text
    for _ in range(3):
        desk.clock.advance(timedelta(minutes=6))  # type: ignore[attr-defined]
        page = await desk.press(SHAANXI_DUTY, page, "下一页")
        assert cards(page) == 5
    [alert] = await alerts(desk)
    assert "连续翻看了搜索「刑侦」的 4 页结果" in alert.payload["text"]


async def test_inline_lookups_count_and_are_refused_in_the_inline_answer(
    desk: BotHarness,
) -> None:
    add_people(desk)
    shown = 0
    for province in PROVINCES:
        results = await inline(desk, JIANGSU_OFFICER, province)
        people = [r for r in results if r["id"].startswith("l")]
        if not people:
            break
        shown += len(people)
        desk.clock.advance(timedelta(minutes=3))  # type: ignore[attr-defined]
    assert shown == 60 == await distinct_cards(desk, JIANGSU_OFFICER)
    [refused] = results
    assert refused["title"] == "🚫 Lookup limit reached"
    assert "New contacts from 11/25 12:00" in refused["description"]
    # 长三角 has no coordinator: the administrators are told.
    [alert] = await alerts(desk)
    assert alert.chat_id == ADMIN and "孙浩然（江苏省公安厅民警" in alert.payload["text"]


async def test_a_duty_officers_ordinary_day_never_trips_a_quota_or_an_alert(
    desk: BotHarness,
) -> None:
    """李静, on duty in 四川 from 08:00 to 20:00: every twenty minutes the counterparts
    she works with (重庆, 云南, 贵州, 西藏 and her own unit's second page), who is on duty in
    her zones and in 云南, by command, plain text, buttons and inline mode."""
    add_people(desk)
    clock = desk.clock  # type: ignore[attr-defined]
    clock.set(clock.now().replace(hour=0, minute=0))  # 08:00 in Beijing
    lookups = 0
    for _ in range(12 * 3):
        answers = [
            await desk.send(SICHUAN_DUTY, "/contact 重庆 刑侦"),
            await desk.send(SICHUAN_DUTY, "云南 禁毒"),
            await desk.send(SICHUAN_DUTY, "/oncall"),
            await desk.send(SICHUAN_DUTY, "/oncall 云南"),
            await desk.send(SICHUAN_DUTY, "/contact 西藏"),
        ]
        own = await desk.send(SICHUAN_DUTY, "/contact 四川")
        answers += [own, await desk.press(SICHUAN_DUTY, own, "下一页")]
        assert all("上限" not in a.text and a.text for a in answers)
        assert await inline(desk, SICHUAN_DUTY, "贵州 治安")
        lookups += len(answers) + 1
        clock.advance(timedelta(minutes=20))
    assert lookups == 288
    assert await alerts(desk) == []
    assert await audited(desk, "lookup.refused") == []
    assert await distinct_cards(desk, SICHUAN_DUTY) < 30
