"""A period of days from what a person types: the figures' period, the case list's dates.

    periods.period("2026-11", today)  ->  (2026-11-01, 2026-11-30)
"""

from __future__ import annotations

import datetime as dt

from handlers.errors import BadInput

# Periods are read within these years: dates far outside them overflow the time zone arithmetic.
FIRST_YEAR, LAST_YEAR = 2000, 2100


def _span(text: str) -> tuple[dt.date, dt.date]:
    """The first and last day of "2026" (a year), "2026-11" (a month) or "2026-11-05" (a day)."""
    if len(text) == 4 and text.isdigit():
        return dt.date(int(text), 1, 1), dt.date(int(text), 12, 31)
    if len(text) == 7:
        first = dt.date.fromisoformat(text + "-01")
        return first, (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    day = dt.date.fromisoformat(text)
    return day, day


def period(text: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """A period from what a person types: "" (this month to date), a year ("2026"), a month
    ("2026-11"), a day, or a range of those ("2026-09..2026-11", "2026-11-01..2026-11-15")."""
    text = text.strip()
    if not text:
        return today.replace(day=1), today
    shown = text if len(text) <= 40 else text[:40] + "…"
    try:
        if ".." in text:
            left, right = (part.strip() for part in text.split("..", 1))
            first, last = _span(left)[0], _span(right)[1]
        else:
            first, last = _span(text)
    except ValueError as exc:
        raise BadInput(f"not a period: {shown!r} (use 2026-11, 2026-11-01..2026-11-15 or 2026)",
                       reason="usage") from exc
    if last < first:
        raise BadInput(f"the period {shown!r} ends before it starts", reason="usage")
    if first.year < FIRST_YEAR or last.year > LAST_YEAR:
        raise BadInput(f"the period {shown!r} is outside {FIRST_YEAR}–{LAST_YEAR}", reason="usage")
    return first, last
