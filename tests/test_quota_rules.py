"""The lookup quotas' rules (core/quota.py), without Telegram or a database."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta

from core.quota import AlertKind
from core.quota import Policy
from core.quota import View
from core.quota import Window
from core.quota import alert_due
from core.quota import alert_key
from core.quota import paging_run
from core.quota import pattern
from core.quota import usage
from core.quota import verdict

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
POLICY = Policy(hour=10, day=20, burst_units=4, burst_minutes=10, paging_pages=4)


def cards(*numbers: int) -> list[tuple[str, str]]:
    return [("liaison", str(n)) for n in numbers]


def seen_at(minutes_ago: int, *numbers: int) -> dict[tuple[str, str], datetime]:
    return {item: NOW - timedelta(minutes=minutes_ago) for item in cards(*numbers)}


def test_new_cards_count_until_the_limit_and_no_further() -> None:
    seen = seen_at(30, *range(8))
    assert verdict(seen, cards(8, 9), POLICY, NOW).allowed  # 10 of 10
    refused = verdict(seen, cards(8, 9, 10), POLICY, NOW)
    assert not refused.allowed
    assert (refused.window, refused.count, refused.limit) == (Window.hour, 8, 10)
    # One card must leave the hour: the oldest was shown 30 minutes ago.
    assert refused.resume_at == NOW + timedelta(minutes=30)


def test_cards_already_shown_in_the_window_are_free() -> None:
    seen = seen_at(5, *range(10))
    assert verdict(seen, cards(0, 3, 9), POLICY, NOW).allowed
    assert not verdict(seen, cards(0, 10), POLICY, NOW).allowed


def test_a_card_an_hour_old_or_from_before_a_lift_counts_as_new() -> None:
    """Re-reading is free only for what the window still holds: a card shown exactly an
    hour ago has left the hour, and one shown before a lift counts afresh."""
    seen = {**seen_at(60, 0), **seen_at(30, *range(1, 11))}
    refused = verdict(seen, cards(0), POLICY, NOW)
    assert (refused.allowed, refused.window, refused.count) == (False, Window.hour, 10)
    assert verdict(seen, cards(1, 10), POLICY, NOW).allowed
    lifted = NOW - timedelta(minutes=10)
    seen = {**seen_at(20, *range(10)), **seen_at(5, *range(10, 20))}
    refused = verdict(seen, cards(0), POLICY, NOW, since=lifted)
    assert (refused.allowed, refused.window, refused.count) == (False, Window.hour, 10)
    assert verdict(seen, cards(10, 19), POLICY, NOW, since=lifted).allowed


def test_the_hour_rolls_and_the_day_holds() -> None:
    seen = {**seen_at(120, *range(10)), **seen_at(61, *range(10, 18))}
    assert verdict(seen, cards(18, 19), POLICY, NOW).allowed  # hour empty, day 20 of 20
    refused = verdict(seen, cards(18, 19, 20), POLICY, NOW)
    assert (refused.window, refused.count, refused.limit) == (Window.day, 18, 20)
    assert refused.resume_at == NOW - timedelta(minutes=120) + timedelta(days=1)
    # A card seen two hours ago is new for the hour but free for the day.
    assert verdict(seen, cards(0), POLICY, NOW).allowed


def test_resume_is_when_this_lookup_fits_and_then_it_does() -> None:
    seen = {**seen_at(50, 0, 1), **seen_at(20, *range(2, 10))}
    refused = verdict(seen, cards(10, 11, 12), POLICY, NOW)
    assert refused.resume_at == NOW + timedelta(minutes=40)  # the third oldest leaves
    later = refused.resume_at
    assert verdict(seen, cards(10, 11, 12), POLICY, later).allowed
    assert not verdict(seen, cards(10, 11, 12), POLICY, later - timedelta(seconds=1)).allowed


def test_a_lift_starts_the_counts_afresh() -> None:
    seen = seen_at(10, *range(10))
    lifted = NOW - timedelta(minutes=5)
    assert not verdict(seen, cards(10), POLICY, NOW).allowed
    assert verdict(seen, cards(10), POLICY, NOW, since=lifted).allowed
    assert [u.count for u in usage(seen, POLICY, NOW, lifted)] == [0, 0]
    assert [(u.count, u.limit) for u in usage(seen, POLICY, NOW, None)] == [(10, 10), (10, 20)]


def test_coordinators_read_under_scaled_quotas() -> None:
    scaled = POLICY.scaled(3)
    assert (scaled.hour, scaled.day, scaled.burst_units) == (30, 60, 12)
    assert scaled.paging_pages == POLICY.paging_pages


def view(minutes_ago: float, unit: str, query: str | None = None,
         offset: int | None = None) -> View:
    return View(NOW - timedelta(minutes=minutes_ago), unit, query, offset)


def test_a_burst_is_many_units_within_minutes() -> None:
    spread = [view(m * 4, str(m)) for m in range(6)]  # one unit every four minutes
    assert not pattern(spread, POLICY, NOW).found
    burst = [view(m, str(m)) for m in range(4)]
    assert pattern(burst, POLICY, NOW).burst_units == ("0", "1", "2", "3")
    same_units = [view(m / 10, str(m % 3)) for m in range(50)]  # a handful, repeated
    assert not pattern(same_units, POLICY, NOW).found
    assert not pattern(burst, POLICY, NOW, since=NOW - timedelta(minutes=1.5)).found


def test_paging_through_a_search_page_after_page() -> None:
    assert paging_run({0, 5, 10, 15}) == 4
    assert paging_run({0, 5, 15}) == 2
    assert paging_run({5, 10}) == 0
    assert paging_run({0}) == 1
    assert paging_run({0, 3, 6, 9}) == 4
    walk = [view(30 - 5 * page, "u", "刑侦", page * 5) for page in range(4)]
    found = pattern(walk, POLICY, NOW)
    assert (found.paged_query, found.pages, found.burst_units) == ("刑侦", 4, ())
    back_and_forth = [view(9, "u", "四川", 0), view(8, "u", "四川", 5), view(7, "u", "四川", 0),
                      view(6, "u", "四川", 5)]
    assert not pattern(back_and_forth, POLICY, NOW).found
    long_ago = [view(61 + page, "u", "刑侦", page * 5) for page in range(4)]
    assert not pattern(long_ago, POLICY, NOW).found


def test_one_alert_per_episode() -> None:
    assert alert_due(AlertKind.hour, None, NOW, None)
    assert not alert_due(AlertKind.hour, NOW - timedelta(minutes=59), NOW, None)
    assert alert_due(AlertKind.hour, NOW - timedelta(minutes=60), NOW, None)
    assert not alert_due(AlertKind.day, NOW - timedelta(hours=23), NOW, None)
    lifted = NOW - timedelta(minutes=1)
    assert alert_due(AlertKind.hour, NOW - timedelta(minutes=5), NOW, lifted)


def test_an_episodes_key_is_shared_and_the_next_ones_differs() -> None:
    key = alert_key(7, AlertKind.hour, NOW, None)
    assert key == alert_key(7, AlertKind.hour, NOW + timedelta(seconds=1), None)
    assert key != alert_key(7, AlertKind.hour, NOW + timedelta(hours=1), None)
    assert key != alert_key(7, AlertKind.hour, NOW, NOW - timedelta(minutes=1))
    assert key != alert_key(7, AlertKind.pattern, NOW, None)
