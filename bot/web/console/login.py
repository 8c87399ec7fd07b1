"""Signing in to the console: password, one-time password link, demo persona; signing out."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlmodel import col

from bot.web.auth import COOKIE
from bot.web.console.text import word
from bot.web.console.web import (
    LOGIN_NONCE,
    Staff,
    check_csrf,
    check_login_nonce,
    keep_login_nonce,
    login_nonce,
    render,
    start_session,
)
from bot.web.deps import Services, end_signed_session
from bot.web.webchat import ensure_web_identity
from handlers import console_access
from handlers.errors import BadInput, NotAllowed, NotFound
from handlers.replies import DEFAULT
from storage import tables as t
from storage.unit_of_work import UnitOfWork

router = APIRouter()


def _safe_next(target: str) -> str:
    """Only a console page of this site: an open redirect would lend our name to phishing."""
    if target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/cases"


def _demo_staff(services: Services) -> list[tuple[str, str]]:
    if not services.demo:
        return []
    with UnitOfWork(services.engine) as uow:
        people = uow.session.scalars(select(t.Person).where(col(t.Person.active).is_(True))
                                     .order_by(col(t.Person.code)))
        return [(p.code, p.name) for p in people]


def _login_page(request: Request, services: Services, *, next_: str, message: str = "",
                status_code: int = 200) -> Response:
    nonce, csrf = login_nonce(request)
    response = render(request, "console/login.html", {
        "lang": DEFAULT, "t": lambda key, **v: word(DEFAULT, key, **v), "next": _safe_next(next_),
        "message": message, "error": status_code >= 400, "demo_staff": _demo_staff(services),
        "csrf": csrf}, status_code=status_code)
    keep_login_nonce(response, nonce)
    return response


@router.get("/console/login", include_in_schema=False)
def login_form(request: Request, services: Services, next: str = "/console/cases", msg: str = "") -> Response:
    return _login_page(request, services, next_=next, message=word(DEFAULT, msg) if msg == "login.password_set" else "")


@router.post("/console/login", include_in_schema=False)
def login(request: Request, services: Services, person: Annotated[str, Form(max_length=64)] = "",
          password: Annotated[str, Form(max_length=console_access.MAX_PASSWORD)] = "",
          csrf: Annotated[str, Form(max_length=128)] = "", next: Annotated[str, Form(max_length=500)] = "") -> Response:
    check_login_nonce(request, csrf)
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        try:
            who = console_access.sign_in(uow.session, person, password, now)
            code = who.code
        except console_access.LockedOut as locked:
            uow.commit()
            minutes = max(1, math.ceil((locked.until - now).total_seconds() / 60))
            return _login_page(request, services, next_=next, status_code=429,
                               message=word(DEFAULT, "login.locked", minutes=minutes))
        except NotAllowed:
            uow.commit()  # the failure is counted
            return _login_page(request, services, next_=next, status_code=401,
                               message=word(DEFAULT, "login.failed"))
        uow.commit()
    return _signed_in(services, f"person:{code}", next)


def _signed_in(services: Services, address: str, next_: str) -> Response:
    if not ensure_web_identity(services, address):
        raise HTTPException(status_code=403, detail="unknown person")
    response = RedirectResponse(_safe_next(next_), status_code=303)
    response.delete_cookie(LOGIN_NONCE)
    start_session(services, response, address)
    return response


@router.post("/console/demo/persona", include_in_schema=False)
def demo_persona(request: Request, services: Services, person: Annotated[str, Form(max_length=64)] = "",
                 csrf: Annotated[str, Form(max_length=128)] = "",
                 next: Annotated[str, Form(max_length=500)] = "") -> Response:
    """The demo's persona picker, for staff: on only where the chat's picker is."""
    if not services.demo:
        raise HTTPException(status_code=404, detail="the persona picker is off")
    check_login_nonce(request, csrf)
    return _signed_in(services, f"person:{person}", next)


@router.post("/console/logout", include_in_schema=False)
def logout(request: Request, viewer: Staff, services: Services,
           csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    check_csrf(request, viewer, csrf)
    end_signed_session(services, request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/console/password/{token}", include_in_schema=False)
def password_form(token: str, request: Request, services: Services) -> Response:
    with UnitOfWork(services.engine) as uow:
        try:
            person = console_access.link_person(uow.session, token, services.clock.now())
        except NotFound:
            return _password_page(request, DEFAULT, "", word(DEFAULT, "password.gone"), 404)
        return _password_page(request, person.language, person.name, "", 200)


def _password_page(request: Request, lang: str, name: str, message: str, status_code: int) -> Response:
    return render(request, "console/password.html", {
        "lang": lang, "t": lambda key, **v: word(lang, key, **v), "name": name, "message": message,
        "usable": status_code != 404}, status_code=status_code)


@router.post("/console/password/{token}", include_in_schema=False)
def set_password(token: str, request: Request, services: Services,
                 password: Annotated[str, Form(max_length=console_access.MAX_PASSWORD)] = "",
                 again: Annotated[str, Form(max_length=console_access.MAX_PASSWORD)] = "") -> Response:
    # The link's token is the secret here: a page of another site cannot know it.
    with UnitOfWork(services.engine) as uow:
        try:
            person = console_access.link_person(uow.session, token, services.clock.now())
        except NotFound:
            return _password_page(request, DEFAULT, "", word(DEFAULT, "password.gone"), 404)
        lang = person.language
        if password != again:
            return _password_page(request, lang, person.name, word(lang, "password.mismatch"), 422)
        try:
            console_access.set_password(uow.session, token, password, services.clock.now())
        except BadInput:
            return _password_page(request, lang, person.name, word(lang, "password.short"), 422)
        uow.commit()
    return RedirectResponse("/console/login?msg=login.password_set", status_code=303)
