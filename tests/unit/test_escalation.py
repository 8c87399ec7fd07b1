"""The deadline watch's pure decisions: when to remind, what is due, what is no longer wanted."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from handlers.deadlines import WorkingCalendar, is_working_day
from handlers.watch.escalation import (
    CaseView,
    WatchPolicy,
    first_working_day,
    minus_working_hours,
    plan,
    reminder_at,
    still_due,
    working_hours_between,
)

CAL = WorkingCalendar("Asia/Shanghai", dt.time(9, 0), dt.time(17, 30))
POLICY = WatchPolicy()


def bj(*args: int) -> dt.datetime:
    """Beijing wall-clock time as aware UTC."""
    return CAL.to_utc(dt.datetime(*args))  # type: ignore[arg-type]


def view(state: str = "assigned", **changes: object) -> CaseView:
    base = CaseView(
        id=7, urgent=False, state=state,
        ack_due=bj(2026, 11, 23, 11, 0), reply_due=bj(2026, 11, 24, 17, 30), resolve_due=bj(2026, 11, 30, 17, 30),
        resolved_at=None, rating=None, ack_start=bj(2026, 11, 23, 10, 0), round_start=bj(2026, 11, 23, 10, 0),
        replied_in_round=False, followed_up_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_reminder_comes_with_a_quarter_of_the_working_time_left() -> None:
    # Monday 10:00 → Tuesday 17:30 is 16 working hours; a quarter is 4 hours before the deadline.
    at = reminder_at(CAL, bj(2026, 11, 23, 10, 0), bj(2026, 11, 24, 17, 30), 0.25, urgent=False)
    assert at == bj(2026, 11, 24, 13, 30)


def test_reminder_never_falls_in_the_national_day_week() -> None:
    # Received the afternoon before the 2026 National Day holiday, due the Friday after it.
    start, due = bj(2026, 9, 30, 16, 0), bj(2026, 10, 9, 17, 30)
    assert working_hours_between(CAL, start, due) == 1.5 + 8.5 + 8.5
    at = reminder_at(CAL, start, due, 0.25, urgent=False)
    assert at is not None
    local = CAL.to_local(at)
    assert is_working_day(local.date()) and dt.time(9) <= local.time() <= dt.time(17, 30)
    assert local == dt.datetime(2026, 10, 9, 12, 52, 30)


def test_working_time_counts_the_adjusted_saturday() -> None:
    # Saturday 2026-10-10 is a working day (调休); Sunday 10-11 is not.
    assert working_hours_between(CAL, bj(2026, 10, 9, 17, 0), bj(2026, 10, 12, 10, 0)) == 0.5 + 8.5 + 1
    assert CAL.to_local(minus_working_hours(CAL, bj(2026, 10, 12, 10, 0), 2)) == dt.datetime(2026, 10, 10, 16, 30)


def test_urgent_reminders_count_the_clock_not_the_calendar() -> None:
    start = bj(2026, 10, 3, 2, 0)  # a holiday, at night
    at = reminder_at(CAL, start, start + dt.timedelta(minutes=20), 0.25, urgent=True)
    assert at == start + dt.timedelta(minutes=15)


def test_a_waiting_case_is_watched_for_all_three_deadlines() -> None:
    kinds = [d.kind for d in plan(view(), POLICY, CAL)]
    assert kinds == ["remind_ack", "escalate_ack", "remind_reply", "escalate_reply", "remind_resolve",
                     "escalate_resolve"]


def test_acknowledged_and_replied_cases_drop_the_deadlines_they_met() -> None:
    assert [d.kind for d in plan(view("acknowledged"), POLICY, CAL)] == [
        "remind_reply", "escalate_reply", "remind_resolve", "escalate_resolve"]
    assert [d.kind for d in plan(view("replied"), POLICY, CAL)] == ["remind_resolve", "escalate_resolve"]
    # Replied, then transferred: the resident has had their answer in this round.
    assert [d.kind for d in plan(view("transferred", replied_in_round=True), POLICY, CAL)][-2:] == [
        "remind_resolve", "escalate_resolve"]
    assert plan(view("closed"), POLICY, CAL) == []


def test_resolved_case_without_rating_gets_a_follow_up_in_working_hours() -> None:
    resolved = bj(2026, 11, 27, 16, 0)  # Friday afternoon; 48 hours later is Sunday
    planned = plan(view("resolved", resolved_at=resolved), POLICY, CAL)
    assert [(d.kind, CAL.to_local(d.due_at)) for d in planned] == [
        ("follow_up", dt.datetime(2026, 11, 30, 9, 0))]
    assert plan(view("resolved", resolved_at=resolved, rating="satisfied"), POLICY, CAL) == []
    followed = plan(view("resolved", resolved_at=resolved, followed_up_at=bj(2026, 11, 30, 9, 0)), POLICY, CAL)
    assert [d.kind for d in followed] == ["close_unrated"]


def test_a_reminder_after_its_deadline_is_no_longer_wanted() -> None:
    waiting = view()
    assert still_due(waiting, "remind_ack", waiting.ack_due, bj(2026, 11, 23, 10, 50), POLICY, CAL)
    assert not still_due(waiting, "remind_ack", waiting.ack_due, bj(2026, 11, 23, 11, 0), POLICY, CAL)
    # A moved deadline makes the old action stale.
    assert not still_due(waiting, "escalate_ack", bj(2026, 11, 23, 10, 0), bj(2026, 11, 23, 12), POLICY, CAL)
    assert not still_due(view("acknowledged"), "escalate_ack", waiting.ack_due, bj(2026, 11, 23, 12), POLICY, CAL)


def test_urgent_cases_climb_the_longer_chain() -> None:
    assert POLICY.chain_for(urgent=True) == ("b", "duty_leader", "director")
    assert POLICY.chain_for(urgent=False) == ("b", "director")


def test_the_months_figures_go_out_on_its_first_working_day() -> None:
    assert first_working_day(dt.date(2026, 10, 20)) == dt.date(2026, 10, 8)  # after the National Day week
    assert first_working_day(dt.date(2026, 11, 23)) == dt.date(2026, 11, 2)  # the 1st is a Sunday
    assert first_working_day(dt.date(2026, 12, 1)) == dt.date(2026, 12, 1)
