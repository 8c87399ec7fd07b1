"""Reply deadlines on the Chinese working calendar (服务时限).

Statutory holidays and adjusted working days (调休, e.g. a Saturday that is worked) come from
`chinesecalendar`. A year the package does not know falls back to Monday–Friday and says so once
in the log. Urgent matters (急难特事) run on the clock, 24/7.

Everything here is pure: times in, times out. Times are aware UTC at the edges (the storage
convention) and naive local wall-clock time inside, in the community's time zone.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

log = logging.getLogger(__name__)


@lru_cache(maxsize=4096)
def is_working_day(day: dt.date) -> bool:
    """True on a working day in mainland China (adjusted working days included)."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        _warn_unknown_year(day.year)
        return day.weekday() < 5


@lru_cache(maxsize=64)
def _warn_unknown_year(year: int) -> None:
    log.warning(
        "chinesecalendar does not know %s: deadlines that year count Monday-Friday as working days",
        year,
    )


@dataclass(frozen=True)
class WorkingCalendar:
    """A community's working hours in its time zone."""

    timezone: str = "Asia/Shanghai"
    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(17, 30)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_local(self, utc: dt.datetime) -> dt.datetime:
        if utc.tzinfo is None:
            utc = utc.replace(tzinfo=dt.UTC)
        return utc.astimezone(self.zone).replace(tzinfo=None)

    def to_utc(self, local: dt.datetime) -> dt.datetime:
        return local.replace(tzinfo=self.zone).astimezone(dt.UTC)

    def local_date(self, utc: dt.datetime) -> dt.date:
        return self.to_local(utc).date()

    def _day_start(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, self.start)

    def _day_end(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, self.end)

    def next_working_moment(self, local: dt.datetime) -> dt.datetime:
        """The first moment at or after `local` inside working hours."""
        day = local.date()
        if is_working_day(day):
            if local < self._day_start(day):
                return self._day_start(day)
            if local < self._day_end(day):
                return local
        day += dt.timedelta(days=1)
        while not is_working_day(day):
            day += dt.timedelta(days=1)
        return self._day_start(day)

    def add_working_hours(self, utc: dt.datetime, hours: float) -> dt.datetime:
        """The moment `hours` of working time after `utc`."""
        remaining = dt.timedelta(hours=hours)
        cursor = self.next_working_moment(self.to_local(utc))
        while True:
            left_today = self._day_end(cursor.date()) - cursor
            if remaining <= left_today:
                return self.to_utc(cursor + remaining)
            remaining -= left_today
            cursor = self.next_working_moment(self._day_end(cursor.date()))

    def end_of_working_day(self, utc: dt.datetime, days: int) -> dt.datetime:
        """Close of business on the `days`-th working day after the day of `utc`.

        Day 0 is the day work can start: today when received in working hours, else the next
        working day; so "1 working day" ends at the close of the working day after day 0.
        """
        day = self.next_working_moment(self.to_local(utc)).date()
        counted = 0
        while counted < days:
            day += dt.timedelta(days=1)
            if is_working_day(day):
                counted += 1
        return self.to_utc(self._day_end(day))


@dataclass(frozen=True)
class TimeLimits:
    acknowledge_hours: float
    reply_days: int
    resolve_days: int


@dataclass(frozen=True)
class UrgentLimits:
    acknowledge_minutes: int = 15
    reply_minutes: int = 60
    resolve_hours: int = 24


@dataclass(frozen=True)
class Deadlines:
    acknowledge: dt.datetime
    reply: dt.datetime
    resolve: dt.datetime


def compute_deadlines(
    dispatched_at: dt.datetime,
    limits: TimeLimits,
    calendar: WorkingCalendar,
    *,
    urgent: bool = False,
    urgent_limits: UrgentLimits = UrgentLimits(),
) -> Deadlines:
    """The three deadlines of a case dispatched at `dispatched_at` (aware UTC)."""
    if urgent:
        return Deadlines(
            acknowledge=dispatched_at + dt.timedelta(minutes=urgent_limits.acknowledge_minutes),
            reply=dispatched_at + dt.timedelta(minutes=urgent_limits.reply_minutes),
            resolve=dispatched_at + dt.timedelta(hours=urgent_limits.resolve_hours),
        )
    return Deadlines(
        acknowledge=calendar.add_working_hours(dispatched_at, limits.acknowledge_hours),
        reply=calendar.end_of_working_day(dispatched_at, limits.reply_days),
        resolve=calendar.end_of_working_day(dispatched_at, limits.resolve_days),
    )
