"""Freeze windows: fixed and weekly windows, time zones, DST changes and midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from rollback_coordinator.core.freeze import FreezeWindow, active_freezes

BERLIN_WEEKEND_NIGHTS = {
    "name": "weekend-nights",
    "weekdays": ["sat"],
    "start": "22:00",
    "end": "06:00",
    "timezone": "Europe/Berlin",
}
FRIDAY_EVENINGS = {
    "name": "friday-evenings",
    "weekdays": ["friday"],
    "start": "16:00",
    "end": "00:00",
    "timezone": "Europe/Berlin",
}
YEAR_END = {
    "name": "year-end",
    "start": "2025-12-20T00:00:00+01:00",
    "end": "2026-01-05T00:00:00+01:00",
}


def window(settings: dict[str, Any], **changes: Any) -> FreezeWindow:
    return FreezeWindow.model_validate({**settings, **changes})


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def inside(settings: dict[str, Any], instant: datetime, **changes: Any) -> bool:
    return window(settings, **changes).occurrence_at(instant) is not None


def test_fixed_window_contains_middle() -> None:
    assert inside(YEAR_END, utc("2025-12-24T12:00:00"))


def test_fixed_window_excludes_before_start() -> None:
    assert not inside(YEAR_END, utc("2025-12-19T22:59:59"))


def test_fixed_window_includes_start_instant() -> None:
    assert inside(YEAR_END, utc("2025-12-19T23:00:00"))


def test_fixed_window_excludes_end_instant() -> None:
    assert not inside(YEAR_END, utc("2026-01-04T23:00:00"))


def test_fixed_window_compares_absolute_instants() -> None:
    tokyo = timezone(timedelta(hours=9))

    # The window starts at 2025-12-20T08:00 in Tokyo, although the date already matches.
    assert not inside(YEAR_END, datetime(2025, 12, 20, 7, 30, tzinfo=tokyo))
    assert inside(YEAR_END, datetime(2025, 12, 20, 8, 30, tzinfo=tokyo))


def test_fixed_window_naive_times_use_timezone() -> None:
    settings = {**YEAR_END, "start": "2025-07-01T09:00:00", "end": "2025-07-01T17:00:00"}

    assert inside(settings, utc("2025-07-01T07:30:00"), timezone="Europe/Berlin")
    assert not inside(settings, utc("2025-07-01T15:30:00"), timezone="Europe/Berlin")


def test_fixed_window_occurrence_has_bounds() -> None:
    occurrence = window(YEAR_END).occurrence_at(utc("2025-12-24T12:00:00"))

    assert occurrence is not None
    assert occurrence.start == utc("2025-12-19T23:00:00")
    assert occurrence.end == utc("2026-01-04T23:00:00")


def test_weekly_window_follows_winter_offset() -> None:
    # 2025-01-10 is a Friday; Berlin is UTC+1, so 16:00 local is 15:00 UTC.
    assert inside(FRIDAY_EVENINGS, utc("2025-01-10T15:30:00"))
    assert not inside(FRIDAY_EVENINGS, utc("2025-01-10T14:30:00"))


def test_weekly_window_follows_summer_offset() -> None:
    # 2025-07-11 is a Friday; Berlin is UTC+2, so 16:00 local is 14:00 UTC.
    assert inside(FRIDAY_EVENINGS, utc("2025-07-11T14:30:00"))
    assert not inside(FRIDAY_EVENINGS, utc("2025-07-11T13:30:00"))


def test_weekly_window_ending_at_midnight() -> None:
    # 22:30 UTC is 23:30 local in winter but already Saturday 00:30 local in summer.
    assert inside(FRIDAY_EVENINGS, utc("2025-01-10T22:30:00"))
    assert not inside(FRIDAY_EVENINGS, utc("2025-07-11T22:30:00"))


def test_weekly_window_skips_other_weekdays() -> None:
    # 2025-01-09 is a Thursday.
    assert not inside(FRIDAY_EVENINGS, utc("2025-01-09T15:30:00"))


def test_window_past_midnight_covers_next_morning() -> None:
    # Saturday 2025-01-11 22:00 until Sunday 06:00 local, UTC+1 all along.
    assert inside(BERLIN_WEEKEND_NIGHTS, utc("2025-01-11T21:30:00"))
    assert inside(BERLIN_WEEKEND_NIGHTS, utc("2025-01-12T04:30:00"))
    assert not inside(BERLIN_WEEKEND_NIGHTS, utc("2025-01-12T05:30:00"))


def test_window_past_midnight_needs_start_weekday() -> None:
    # Sunday night 22:30 local: the window starts on Saturdays only.
    assert not inside(BERLIN_WEEKEND_NIGHTS, utc("2025-01-12T21:30:00"))
    # Saturday 03:00 local belongs to an occurrence that would start on Friday.
    assert not inside(BERLIN_WEEKEND_NIGHTS, utc("2025-01-11T02:00:00"))


def test_window_across_spring_dst_change() -> None:
    # Clocks go from 02:00 CET to 03:00 CEST on Sunday 2025-03-30, so 06:00 local is
    # 04:00 UTC that morning instead of 05:00 UTC a week earlier.
    assert inside(BERLIN_WEEKEND_NIGHTS, utc("2025-03-29T21:30:00"))
    assert inside(BERLIN_WEEKEND_NIGHTS, utc("2025-03-30T03:30:00"))
    assert not inside(BERLIN_WEEKEND_NIGHTS, utc("2025-03-30T04:30:00"))
    assert inside(BERLIN_WEEKEND_NIGHTS, utc("2025-03-23T04:30:00"))


def test_window_across_autumn_dst_change() -> None:
    # Clocks go from 03:00 CEST back to 02:00 CET on Sunday 2025-10-26, so 06:00 local
    # is 05:00 UTC that morning instead of 04:00 UTC a week earlier.
    assert inside(BERLIN_WEEKEND_NIGHTS, utc("2025-10-26T04:30:00"))
    assert not inside(BERLIN_WEEKEND_NIGHTS, utc("2025-10-26T05:30:00"))
    assert not inside(BERLIN_WEEKEND_NIGHTS, utc("2025-10-19T04:30:00"))


def test_dst_window_occurrence_lasts_seven_hours() -> None:
    occurrence = window(BERLIN_WEEKEND_NIGHTS).occurrence_at(utc("2025-03-30T00:00:00"))

    assert occurrence is not None
    assert occurrence.start == utc("2025-03-29T21:00:00")
    assert occurrence.end == utc("2025-03-30T04:00:00")


def test_start_in_skipped_hour_moves_forward() -> None:
    # 02:30 does not exist in Berlin on 2025-03-30; it reads as 03:30 CEST (01:30 UTC).
    settings = {**BERLIN_WEEKEND_NIGHTS, "weekdays": ["sun"], "start": "02:30", "end": "05:00"}

    assert not inside(settings, utc("2025-03-30T01:15:00"))
    assert inside(settings, utc("2025-03-30T01:45:00"))


def test_weekly_window_without_weekdays_is_daily() -> None:
    settings = {"name": "nightly", "start": "01:00", "end": "02:00", "timezone": "UTC"}

    for day in range(1, 8):
        assert inside(settings, utc(f"2025-06-0{day}T01:30:00")), f"2025-06-0{day}"


def test_equal_start_and_end_last_a_day() -> None:
    settings = {**FRIDAY_EVENINGS, "start": "12:00", "end": "12:00", "timezone": "UTC"}

    assert inside(settings, utc("2025-01-11T11:59:00"))
    assert not inside(settings, utc("2025-01-11T12:00:00"))


def test_window_applies_to_listed_environments() -> None:
    frozen = window(YEAR_END, environments=["prod"])
    instant = utc("2025-12-24T12:00:00")

    assert [active.window.name for active in active_freezes([frozen], "prod", instant)] == [
        "year-end"
    ]
    assert active_freezes([frozen], "staging", instant) == []


def test_window_without_environments_applies_everywhere() -> None:
    frozen = window(YEAR_END)

    assert len(active_freezes([frozen], "staging", utc("2025-12-24T12:00:00"))) == 1


def test_active_freezes_keep_file_order() -> None:
    windows = [window(FRIDAY_EVENINGS), window(YEAR_END)]

    active = active_freezes(windows, "prod", utc("2025-12-26T15:30:00"))

    assert [item.window.name for item in active] == ["friday-evenings", "year-end"]


def test_active_freeze_description_uses_local_time() -> None:
    [active] = active_freezes([window(FRIDAY_EVENINGS)], "prod", utc("2025-07-11T14:30:00"))

    assert active.describe() == (
        "change freeze 'friday-evenings' is in force from 2025-07-11T16:00:00+02:00 "
        "until 2025-07-12T00:00:00+02:00"
    )


def test_naive_instant_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window(YEAR_END).occurrence_at(datetime(2025, 12, 24, 12, 0))
