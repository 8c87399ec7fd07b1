"""Who gets a case: a pure, table-driven function of (kind, category, urgency, grid, day).

The rules, from the seeds:
- a category is owned by a post; "grid" means the post of the resident's grid (网格化管理);
- the A holder takes it unless absent that day, else the B holder (AB岗); when both are away the
  front desk takes it, so that every matter lands somewhere (件件有着落);
- complaints go to the mediation centre (群众工作中心), with the grid worker informed;
- urgent matters (急难特事) also alert that day's duty leader (社区服务365) at once;
- an unknown address or a category nobody owns goes to the front desk (前台一口受理).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

GRID_OWNER = "grid"
WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class PostSeat:
    """A post and its holders, by person code."""

    code: str
    kind: str
    a: str
    b: str | None = None
    grid: str | None = None


@dataclass(frozen=True)
class RoutingTable:
    """Everything routing needs about one community, by code."""

    posts: Mapping[str, PostSeat]
    category_owners: Mapping[str, str]
    leaves: Mapping[str, tuple[tuple[dt.date, dt.date], ...]] = field(default_factory=dict)
    duty: Mapping[str, str] = field(default_factory=dict)

    def post_of_kind(self, kind: str) -> PostSeat:
        for seat in self.posts.values():
            if seat.kind == kind:
                return seat
        raise LookupError(f"no post of kind {kind!r}")

    def grid_post(self, grid: str) -> PostSeat | None:
        for seat in self.posts.values():
            if seat.kind == "grid" and seat.grid == grid:
                return seat
        return None


@dataclass(frozen=True)
class Route:
    """The outcome: the post that owns the case, who holds it, and who else is told."""

    post: str
    holder: str
    reason: str
    covering: bool = False
    informed: tuple[str, ...] = ()
    duty_leader: str | None = None


def is_absent(person: str, day: dt.date, table: RoutingTable) -> bool:
    return any(start <= day <= end for start, end in table.leaves.get(person, ()))


def seat_holder(seat: PostSeat, day: dt.date, table: RoutingTable) -> tuple[str, bool] | None:
    """The person holding the seat that day and whether that is the B holder; None if both away."""
    if not is_absent(seat.a, day, table):
        return seat.a, False
    if seat.b is not None and not is_absent(seat.b, day, table):
        return seat.b, True
    return None


def duty_leader(day: dt.date, table: RoutingTable) -> str | None:
    """The duty leader of the day: a dated entry first, then the weekday."""
    return table.duty.get(day.isoformat()) or table.duty.get(WEEKDAY_KEYS[day.weekday()])


def route(
    *,
    kind: str,
    category: str,
    urgent: bool,
    grid: str | None,
    day: dt.date,
    table: RoutingTable,
) -> Route:
    """Route one matter. `day` is the local date of dispatch."""
    grid_seat = table.grid_post(grid) if grid else None
    reason: str
    seat: PostSeat | None
    informed: list[str] = []
    if kind == "complaint":
        seat, reason = table.post_of_kind("mediation"), "complaint"
        if grid_seat is not None:
            worker = seat_holder(grid_seat, day, table)
            if worker is not None:
                informed.append(worker[0])
    else:
        owner = table.category_owners.get(category)
        if owner is None:
            seat, reason = None, "unknown_category"
        elif owner == GRID_OWNER:
            seat, reason = (grid_seat, "grid") if grid_seat else (None, "unknown_address")
        else:
            seat, reason = table.posts.get(owner), "category"
            if seat is None:
                reason = "unknown_category"

    held = seat_holder(seat, day, table) if seat is not None else None
    if seat is None or held is None:
        if seat is not None:
            reason = "post_absent"
        seat = table.post_of_kind("front_desk")
        held = seat_holder(seat, day, table) or (seat.a, False)
    holder, covering = held

    leader = duty_leader(day, table) if urgent else None
    if leader is not None and leader not in informed:
        informed.append(leader)
    return Route(
        post=seat.code,
        holder=holder,
        reason=reason,
        covering=covering,
        informed=tuple(p for p in informed if p != holder),
        duty_leader=leader,
    )
