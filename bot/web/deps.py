"""FastAPI dependencies: the services built at start, and who the web visitor is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from bot.channels.webchat import CHANNEL
from bot.web.auth import COOKIE, verify
from storage import tables as t

# Row ids are 64-bit integers: a larger (or negative) number compared with an id column gets 422
# before it reaches the database, whose driver would fail on it.
ROW_ID_MAX = 2**63 - 1
RowIdQuery = Annotated[int, Query(ge=0, le=ROW_ID_MAX)]


def get_services(request: Request) -> Any:
    return request.app.state.services


Services = Annotated[Any, Depends(get_services)]


def current_address(request: Request) -> str:
    """The web chat address of the visitor's signed session cookie; 401 without one."""
    services = request.app.state.services
    token = request.cookies.get(COOKIE)
    address = verify(services.settings.secret_key, token) if token else None
    if address is None:
        raise HTTPException(status_code=401, detail="not signed in: open your personal link")
    return address


Address = Annotated[str, Depends(current_address)]


def web_identity(session: Session, address: str) -> t.Identity:
    """The identity behind a signed web chat address; 401 when it no longer exists."""
    ident = session.scalars(
        select(t.Identity)
        .where(col(t.Identity.channel) == CHANNEL, col(t.Identity.address) == address)
    ).first()
    if ident is None:
        raise HTTPException(status_code=401, detail="unknown session")
    return ident
