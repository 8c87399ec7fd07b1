"""Routing is a pure table lookup: who holds a matter, who else is told."""

from __future__ import annotations

import datetime as dt

from handlers.routing import PostSeat, RoutingTable, route

MON = dt.date(2026, 11, 23)
TABLE = RoutingTable(
    posts={
        "G01": PostSeat("G01", "grid", a="wang", b="li", grid="ZN-G01"),
        "G02": PostSeat("G02", "grid", a="li", b="wang", grid="ZN-G02"),
        "MZ": PostSeat("MZ", "specialist", a="zhao", b="qian"),
        "MED": PostSeat("MED", "mediation", a="sun", b="zhou"),
        "FD": PostSeat("FD", "front_desk", a="wu", b="zheng"),
        "DIR": PostSeat("DIR", "director", a="chen"),
    },
    category_owners={"facilities": "grid", "civil_affairs": "MZ", "other": "FD"},
    leaves={"wang": ((dt.date(2026, 11, 20), dt.date(2026, 11, 27)),),
            "zhao": ((dt.date(2026, 12, 1), dt.date(2026, 12, 2)),),
            "qian": ((dt.date(2026, 12, 1), dt.date(2026, 12, 2)),)},
    duty={"mon": "chen", "tue": "zhou", "2026-10-01": "sun"},
)


def go(kind: str = "service_request", category: str = "facilities", urgent: bool = False,
       grid: str | None = "ZN-G02", day: dt.date = MON):
    return route(kind=kind, category=category, urgent=urgent, grid=grid, day=day, table=TABLE)


def test_grid_category_goes_to_the_grid_a_holder() -> None:
    r = go()
    assert (r.post, r.holder, r.covering, r.reason) == ("G02", "li", False, "grid")


def test_a_holder_on_leave_hands_to_b() -> None:
    r = go(grid="ZN-G01")
    assert (r.post, r.holder, r.covering) == ("G01", "li", True)


def test_leave_outside_its_dates_changes_nothing() -> None:
    assert go(grid="ZN-G01", day=dt.date(2026, 11, 30)).holder == "wang"


def test_specialist_category_goes_to_its_post_wherever_the_resident_lives() -> None:
    r = go(category="civil_affairs", grid=None)
    assert (r.post, r.holder, r.reason) == ("MZ", "zhao", "category")


def test_both_holders_away_lands_at_the_front_desk() -> None:
    r = go(category="civil_affairs", day=dt.date(2026, 12, 1))
    assert (r.post, r.holder, r.reason) == ("FD", "wu", "post_absent")


def test_complaint_goes_to_mediation_and_informs_the_grid_worker() -> None:
    r = go(kind="complaint", category="neighbor")
    assert (r.post, r.holder, r.informed) == ("MED", "sun", ("li",))


def test_urgent_alerts_the_duty_leader_of_the_day() -> None:
    assert go(urgent=True).informed == ("chen",)
    assert go(urgent=True, day=dt.date(2026, 11, 24)).duty_leader == "zhou"


def test_dated_duty_beats_the_weekday() -> None:
    assert go(urgent=True, day=dt.date(2026, 10, 1)).duty_leader == "sun"


def test_unknown_address_goes_to_the_front_desk() -> None:
    r = go(grid=None)
    assert (r.post, r.reason) == ("FD", "unknown_address")


def test_unroutable_category_goes_to_the_front_desk() -> None:
    r = go(category="astrology")
    assert (r.post, r.reason) == ("FD", "unknown_category")


def test_holder_is_never_also_informed() -> None:
    table_duty_is_holder = go(kind="complaint", urgent=True, day=dt.date(2026, 10, 1))
    assert table_duty_is_holder.holder == "sun"
    assert "sun" not in table_duty_is_holder.informed
