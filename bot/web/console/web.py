"""What every console page needs: the templates, who the viewer is, and CSRF tokens.

The console shares the web chat's session cookie (bot/web/auth.py): a signed personal link, the
demo persona picker and the console's own sign-in all open both. Every POST carries a CSRF token
derived from that cookie (a hidden `csrf` field, or the `X-CSRF-Token` header for htmx), so a
page of another site cannot act with the cookie the browser sends along.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response
from fastapi.templating import Jinja2Templates

from bot.web.auth import COOKIE, SESSION_MARK, sign
from bot.web.console.text import word
from bot.web.deps import current_address, web_identity
from handlers.registry import console_access, directory
from handlers.replies import pick_language, when
from storage import tables as t
from storage.unit_of_work import UnitOfWork

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
LOGIN_NONCE = "griddesk_login"


def _mac(secret: str, purpose: str, value: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}|{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_for(secret: str, cookie: str) -> str:
    """The CSRF token of a session: bound to its cookie, so it dies with the session."""
    return _mac(secret, "csrf", cookie)


def same(a: str, b: str) -> bool:
    return a.isascii() and b.isascii() and hmac.compare_digest(a, b)


@dataclass(frozen=True)
class Viewer:
    """The signed-in staff member a console page is for."""

    person_id: int
    code: str
    name: str
    lang: str
    timezone: str
    is_director: bool
    address: str
    csrf: str

    def t(self, key: str, **values: object) -> str:
        return word(self.lang, key, **values)

    def when(self, at: Any) -> str:
        return when(self.lang, at, self.timezone)


def _to_login(request: Request) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/console/login?next={quote(target, safe='')}"
    # htmx follows HX-Redirect itself; a plain browser follows the 303.
    return HTTPException(status_code=303, detail="sign in", headers={"Location": location, "HX-Redirect": location})


def console_viewer(request: Request) -> Viewer:
    """The staff member behind the session; a redirect to sign-in without one, 403 for a resident."""
    services = request.app.state.services
    try:
        address = current_address(request)
    except HTTPException:
        raise _to_login(request) from None
    with UnitOfWork(services.engine) as uow:
        try:
            ident = web_identity(uow.session, address)
        except HTTPException:
            raise _to_login(request) from None
        person = uow.session.get(t.Person, ident.person_id) if ident.person_id else None
        if person is None or not person.active:
            raise HTTPException(status_code=403, detail=word(pick_language(ident.language), "denied"))
        community = directory.community(uow.session, person.community_id)
        return Viewer(person_id=person.id or 0, code=person.code, name=person.name,
                      lang=pick_language(person.language), timezone=community.timezone,
                      is_director=person.has_role("director"), address=address,
                      csrf=csrf_for(services.settings.secret_key, request.cookies.get(COOKIE, "")))


Staff = Annotated[Viewer, Depends(console_viewer)]


def check_csrf(request: Request, viewer: Viewer, sent: str) -> None:
    """403 unless the POST carries the session's CSRF token (form field or X-CSRF-Token header)."""
    token = sent or request.headers.get("x-csrf-token", "")
    if not token or not same(token, viewer.csrf):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")


def start_session(services: Any, response: Response, address: str) -> None:
    """Sign the browser in as `address`: a session row and the shared session cookie."""
    with UnitOfWork(services.engine) as uow:
        token = console_access.open_session(uow.session, address, services.clock.now())
        uow.commit()
    ttl = int(console_access.SESSION_TTL.total_seconds())
    response.set_cookie(COOKIE, sign(services.settings.secret_key, f"{address}{SESSION_MARK}{token}", ttl=ttl),
                        max_age=ttl, httponly=True, samesite="lax")


def login_nonce(request: Request) -> tuple[str, str]:
    """The sign-in form's CSRF pair: a random nonce for a cookie, its MAC for the form."""
    services = request.app.state.services
    nonce = request.cookies.get(LOGIN_NONCE) or secrets.token_urlsafe(16)
    return nonce, _mac(services.settings.secret_key, "login", nonce)


def keep_login_nonce(response: Response, nonce: str) -> None:
    response.set_cookie(LOGIN_NONCE, nonce, httponly=True, samesite="lax", max_age=3600)


def check_login_nonce(request: Request, sent: str) -> None:
    services = request.app.state.services
    nonce = request.cookies.get(LOGIN_NONCE, "")
    if not nonce or not sent or not same(sent, _mac(services.settings.secret_key, "login", nonce)):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code, headers=headers)
