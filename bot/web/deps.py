"""FastAPI dependencies: the services built at start, and who the web visitor is."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import redis.exceptions
from fastapi import Depends, HTTPException, Query, Request
from pydantic import AfterValidator
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from bot.channels.webchat import CHANNEL
from bot.pipeline import UNSTORABLE
from bot.web.auth import COOKIE, split_session, verify
from handlers.registry import console_access
from storage import tables as t
from storage.unit_of_work import UnitOfWork

# A number past the id columns' range (storage.tables.ROW_ID_MAX) or negative gets 422 before it
# reaches the database, which would fail on it.
RowIdQuery = Annotated[int, Query(ge=0, le=t.ROW_ID_MAX)]


def _storable(value: str) -> str:
    """A lone surrogate ("\\ud800" in JSON, or the raw bytes ED A0 80) is no character at all and
    no database can store it; PostgreSQL refuses NUL in text. A JSON field holding either is
    refused with 422 naming the field, so the client learns its text was garbled and nothing is
    kept (other channels, which cannot be answered 422, have it replaced by the pipeline)."""
    found = UNSTORABLE.search(value)
    if found is not None:
        what = "a NUL character" if found[0] == "\x00" else "a lone surrogate (not valid Unicode)"
        raise ValueError(f"the text holds {what} at position {found.start()}")
    return value


Text = Annotated[str, AfterValidator(_storable)]

# The state store (Redis) is unreachable: the request is answered 503 with Retry-After.
STATE_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
RETRY_AFTER_SECONDS = 5

# What each route may answer besides its success, for the OpenAPI schema (FastAPI `responses=`).
_MEANING = {
    401: "not signed in, or the session names no one",
    403: "signed in, but not allowed",
    404: "no such thing, or not shown to this visitor",
    413: "request body over the size limit",
    422: "malformed input; `detail` says what",
    503: "a dependency is down or busy; try again after Retry-After seconds",
}


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that may answer `codes`."""
    return {code: {"description": _MEANING[code]} for code in codes}


async def get_services(request: Request) -> Any:
    # async: FastAPI runs a plain function dependency in a worker thread, a hop per request.
    return request.app.state.services


Services = Annotated[Any, Depends(get_services)]


def _signed(request: Request) -> str | None:
    """The verified value of the visitor's session cookie; None without a valid one."""
    token = request.cookies.get(COOKIE)
    return verify(request.app.state.services.settings.secret_key, token) if token else None


def _address(services: Any, signed: str | None) -> str:
    """The web chat address of a verified cookie value; 401 without one, or when its session
    has been signed out or has expired."""
    address = _live(services, signed) if signed is not None else None
    if address is None:
        raise HTTPException(status_code=401, detail="not signed in: open your personal link")
    return address


def current_address(request: Request) -> str:
    """The web chat address of the visitor's signed session cookie; 401 without one."""
    return _address(request.app.state.services, _signed(request))


async def _visitor(request: Request) -> str:
    """`current_address` as a dependency: on the event loop for a cookie that is all there is to
    check (a plain function dependency would cost a worker-thread hop on every request), in a
    worker thread when the cookie names a server-side session, which is a database read."""
    services, signed = request.app.state.services, _signed(request)
    if signed is not None and split_session(signed)[1] is None:
        return _address(services, signed)
    return await anyio.to_thread.run_sync(_address, services, signed)


Address = Annotated[str, Depends(_visitor)]


def _live(services: Any, signed: str) -> str | None:
    """The address of a verified cookie, None when its session has been signed out or expired."""
    address, session_token = split_session(signed)
    if session_token is None:
        return address
    with UnitOfWork(services.engine) as uow:
        return console_access.session_address(uow.session, session_token, services.clock.now())


def end_signed_session(services: Any, cookie: str) -> None:
    """Sign out for good: the session behind a verified cookie ends on the server, so a copy of
    the cookie opens neither the chat nor the console afterwards."""
    signed = verify(services.settings.secret_key, cookie)
    if signed is None:
        return
    _, token = split_session(signed)
    if token is not None:
        with UnitOfWork(services.engine) as uow:
            console_access.end_session(uow.session, token, services.clock.now())
            uow.commit()


def web_identity(session: Session, address: str) -> t.Identity:
    """The identity behind a signed web chat address; 401 when it no longer exists."""
    ident = session.scalars(
        select(t.Identity)
        .where(col(t.Identity.channel) == CHANNEL, col(t.Identity.address) == address)
    ).first()
    if ident is None:
        raise HTTPException(status_code=401, detail="unknown session")
    return ident
