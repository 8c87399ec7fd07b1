"""Deadlines on the Chinese working calendar: holidays, adjusted working days, working hours."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from handlers.deadlines import (
    TimeLimits,
    UrgentLimits,
    WorkingCalendar,
    compute_deadlines,
    is_working_day,
)

CAL = WorkingCalendar("Asia/Shanghai", dt.time(9, 0), dt.time(17, 30))


def local(*args: int) -> dt.datetime:
    """A Beijing wall-clock time as the naive UTC the store keeps."""
    return CAL.to_utc(dt.datetime(*args))


def test_national_day_week_is_not_working_but_its_adjusted_saturday_is() -> None:
    assert not is_working_day(dt.date(2026, 10, 1))
    assert not is_working_day(dt.date(2026, 10, 7))
    assert is_working_day(dt.date(2026, 10, 10))  # 调休: Saturday worked
    assert not is_working_day(dt.date(2026, 11, 21))  # an ordinary Saturday


def test_acknowledge_hours_stop_at_closing_and_resume_next_working_morning() -> None:
    # Friday 16:30 + 2 working hours = Monday 10:00 (17:30 closes Friday after one hour).
    due = CAL.add_working_hours(local(2026, 11, 20, 16, 30), 2)
    assert CAL.to_local(due) == dt.datetime(2026, 11, 23, 10, 0)


def test_a_message_at_night_starts_counting_at_nine() -> None:
    due = CAL.add_working_hours(local(2026, 11, 23, 22, 0), 1)
    assert CAL.to_local(due) == dt.datetime(2026, 11, 24, 10, 0)


def test_reply_days_skip_the_national_day_holiday() -> None:
    # Received Wednesday 30 September (day 0); 1–7 October are holidays; 8 and 9 October are
    # working days and so is Saturday 10 October (调休).
    received = local(2026, 9, 30, 10, 0)
    assert CAL.to_local(CAL.end_of_working_day(received, 1)) == dt.datetime(2026, 10, 8, 17, 30)
    assert CAL.to_local(CAL.end_of_working_day(received, 3)) == dt.datetime(2026, 10, 10, 17, 30)
    assert CAL.to_local(CAL.end_of_working_day(received, 4)) == dt.datetime(2026, 10, 12, 17, 30)


def test_received_on_a_weekend_counts_from_monday() -> None:
    due = CAL.end_of_working_day(local(2026, 11, 21, 11, 0), 1)
    assert CAL.to_local(due) == dt.datetime(2026, 11, 24, 17, 30)


def test_urgent_deadlines_run_on_the_clock_at_night_and_on_holidays() -> None:
    start = local(2026, 10, 2, 3, 0)
    d = compute_deadlines(start, TimeLimits(2, 1, 5), CAL, urgent=True, urgent_limits=UrgentLimits(15, 60, 24))
    assert d.acknowledge - start == dt.timedelta(minutes=15)
    assert d.reply - start == dt.timedelta(hours=1)
    assert d.resolve - start == dt.timedelta(hours=24)


def test_deadlines_are_ordered() -> None:
    d = compute_deadlines(local(2026, 11, 23, 10, 0), TimeLimits(2, 1, 5), CAL)
    assert d.acknowledge < d.reply < d.resolve
    assert CAL.to_local(d.resolve) == dt.datetime(2026, 11, 30, 17, 30)


def test_unknown_year_falls_back_to_weekends_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert is_working_day(dt.date(2099, 6, 1))  # a Monday
        assert not is_working_day(dt.date(2099, 6, 6))  # a Saturday
    assert "2099" in caplog.text
