"""Residents: binding a channel account to a building (扫码绑定), and who their grid worker is."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.conversation import Actor
from handlers.registry import directory
from storage import tables as t


def bind(session: Session, actor: Actor, building_code: str, now: dt.datetime) -> t.Resident:
    """Tie the actor's channel account to a building, creating the resident on first contact.

    Raises NotFound for an unknown building; nothing is created then.
    """
    building = directory.building_by_code(session, building_code)
    grid = session.get(t.Grid, building.grid_id)
    committee = session.get(t.Committee, grid.committee_id) if grid else None
    assert committee is not None
    resident = actor.resident
    if resident is None:
        resident = t.Resident(
            community_id=committee.community_id,
            building_id=building.id,
            language=actor.lang,
            created_at=now,
        )
        session.add(resident)
        session.flush()
    else:
        resident.building_id = building.id
        resident.community_id = committee.community_id
    ident = session.scalars(
        select(t.Identity).where(col(t.Identity.channel) == actor.channel,
                                 col(t.Identity.address) == actor.address)
    ).first()
    if ident is None:
        ident = t.Identity(channel=actor.channel, address=actor.address, created_at=now)
        session.add(ident)
    ident.resident_id = resident.id
    ident.person_id = None
    ident.language = actor.lang
    session.flush()
    actor.resident = resident
    actor.identity = ident
    return resident


def committees(session: Session) -> list[t.Committee]:
    return list(session.scalars(select(t.Committee).where(col(t.Committee.active).is_(True))
                                .order_by(col(t.Committee.code))))


def buildings_of_committee(session: Session, committee_code: str) -> list[t.Building]:
    return list(
        session.scalars(
            select(t.Building)
            .join(t.Grid, col(t.Grid.id) == t.Building.grid_id)
            .join(t.Committee, col(t.Committee.id) == t.Grid.committee_id)
            .where(col(t.Committee.code) == committee_code, col(t.Building.active).is_(True))
            .order_by(col(t.Building.code))
        )
    )


def nearest_building(session: Session, latitude: float, longitude: float) -> t.Building | None:
    """The building closest to a shared location, among those with coordinates."""
    best: tuple[float, t.Building] | None = None
    for b in session.scalars(select(t.Building).where(col(t.Building.active).is_(True),
                                                      col(t.Building.latitude).is_not(None))):
        assert b.latitude is not None and b.longitude is not None
        d = (b.latitude - latitude) ** 2 + (b.longitude - longitude) ** 2
        if best is None or d < best[0]:
            best = (d, b)
    return best[1] if best else None
