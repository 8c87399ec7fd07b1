"""Signing in to the console: password, WeCom, one-time password link, demo persona; signing out.

WeCom (企业微信): `/console/login/wecom/start` sends the browser to WeCom's OAuth inside the WeCom
app, to its QR login anywhere else; WeCom comes back to `PUBLIC_URL/console/login/wecom` with a
`code`, which `auth/getuserinfo` turns into the member id, matched to an active person's
`wecom_userid`. The `state` that goes along is signed, bound to this browser's sign-in cookie,
good for WECOM_STATE_TTL and used once, so neither a stale nor a forwarded callback signs
anyone in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import re
import secrets
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlmodel import col
from wechatpy.exceptions import WeChatClientException

from bot.channels import wecom
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
    same,
    start_session,
)
from bot.web.deps import Services, end_signed_session
from bot.web.webchat import ensure_web_identity
from handlers.errors import BadInput, NotAllowed, NotFound
from handlers.registry import console_access
from handlers.replies import DEFAULT
from storage import tables as t
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
router = APIRouter()

WECOM_CALLBACK = "/console/login/wecom"
WECOM_STATE_TTL = dt.timedelta(minutes=10)
# A state WeCom carries back: [a-zA-Z0-9], 128 bytes at most. Ours: nonce, expiry, MAC.
_STATE = re.compile(r"^([0-9a-f]{32})([0-9]{10})([0-9a-f]{40})$")
# The WeCom sign-in's words (zh-Hans, zh-Hant, en), as the console's own in bot/web/console/text.py.
_WECOM_WORDS: dict[str, tuple[str, str, str]] = {
    "login.wecom": ("企业微信登录", "企業微信登入", "Sign in with WeCom"),
    "login.wecom_stale": ("登录已失效，请重新登录。", "登入已失效，請重新登入。",
                          "That sign-in has expired or was used already; please sign in again."),
    "login.wecom_unknown": ("此企业微信账号未登记为工作人员，无法登录工作台。",
                            "此企業微信帳號未登記為工作人員，無法登入工作台。",
                            "This WeCom account is not a registered staff member, so it cannot open the console."),
    "login.wecom_down": ("暂时无法连接企业微信，请稍后再试或使用密码登录。",
                         "暫時無法連線企業微信，請稍後再試或使用密碼登入。",
                         "WeCom cannot be reached just now; try again later or sign in with your password."),
}


def _say(lang: str, key: str, **values: object) -> str:
    if key in _WECOM_WORDS:
        zh_hans, zh_hant, en = _WECOM_WORDS[key]
        return {"zh-Hant": zh_hant, "en": en}.get(lang, zh_hans).format(**values)
    return word(lang, key, **values)


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
        "lang": DEFAULT, "t": lambda key, **v: _say(DEFAULT, key, **v), "next": _safe_next(next_),
        "message": message, "error": status_code >= 400, "demo_staff": _demo_staff(services),
        "csrf": csrf, "wecom": _wecom_on(services)}, status_code=status_code)
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


# --------------------------------------------------------------------------- WeCom


def _wecom_on(services: Services) -> bool:
    settings = services.settings
    return bool(settings.wecom_corp_id and settings.wecom_secret and settings.wecom_agent_id is not None)


def _state_mac(secret: str, nonce: str, expiry: str, browser: str) -> str:
    body = f"wecom-login|{nonce}|{expiry}|{browser}".encode()
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()[:40]


def _new_state(secret: str, browser: str, now: dt.datetime) -> str:
    nonce = secrets.token_hex(16)
    expiry = f"{int((now + WECOM_STATE_TTL).timestamp()):010d}"
    return nonce + expiry + _state_mac(secret, nonce, expiry, browser)


def _claim_state(services: Services, state: str, browser: str) -> bool:
    """Whether `state` is ours, for this browser, unexpired, and used now for the first time."""
    found = _STATE.match(state)
    if found is None or not browser:
        return False
    nonce, expiry, mac = found.groups()
    now = services.clock.now()
    if not same(mac, _state_mac(services.settings.secret_key, nonce, expiry, browser)):
        return False
    left = int(expiry) - int(now.timestamp())
    if left <= 0:
        return False
    return services.state.first_time(f"wecom:login-state:{nonce}", left + 60)


def _wecom_client(services: Services) -> wecom.WeComClient | None:
    """The app's client (its access token shared with the sender), or a new one."""
    sender = services.senders.get(wecom.CHANNEL)
    if isinstance(sender, wecom.WeComSender):
        return sender.client
    return wecom.build_client(services.settings)


@router.get(WECOM_CALLBACK + "/start", include_in_schema=False)
def wecom_start(request: Request, services: Services, next: str = "/console/cases") -> Response:
    """Off to WeCom: its OAuth inside the WeCom app, its QR login in any other browser."""
    if not _wecom_on(services):
        raise HTTPException(status_code=404, detail="WeCom sign-in is not configured")
    settings = services.settings
    browser, _ = login_nonce(request)
    target = _safe_next(next)
    redirect_uri = settings.public_url.rstrip("/") + WECOM_CALLBACK
    if target != "/console/cases":
        redirect_uri += "?" + urlencode({"next": target})
    url = wecom.authorize_url(settings.wecom_corp_id or "", settings.wecom_agent_id or 0, redirect_uri,
                              _new_state(settings.secret_key, browser, services.clock.now()),
                              in_app=wecom.in_wecom_app(request.headers.get("user-agent", "")))
    response = RedirectResponse(url, status_code=303)
    keep_login_nonce(response, browser)
    return response


@router.get(WECOM_CALLBACK, include_in_schema=False)
def wecom_callback(request: Request, services: Services, code: str = "", state: str = "",
                   next: str = "/console/cases") -> Response:
    """WeCom's redirect back: the code's member, if an active person has that WeCom id."""
    if not _wecom_on(services):
        raise HTTPException(status_code=404, detail="WeCom sign-in is not configured")

    def refused(key: str, status_code: int) -> Response:
        return _login_page(request, services, next_=next, status_code=status_code, message=_say(DEFAULT, key))

    if not code or not _claim_state(services, state, request.cookies.get(LOGIN_NONCE, "")):
        return refused("login.wecom_stale", 403)
    client = _wecom_client(services)
    if client is None:
        return refused("login.wecom_down", 503)
    try:
        userid = wecom.member_of_code(client, code)
    except wecom.NotAMember:
        return refused("login.wecom_unknown", 403)
    except WeChatClientException as exc:
        if exc.errcode == wecom.INVALID_CODE:
            return refused("login.wecom_stale", 403)
        log.warning("console: WeCom did not say who signed in (%s)", wecom.wc.failure(exc))
        return refused("login.wecom_down", 502)
    except Exception as exc:  # noqa: BLE001 - WeCom down or garbled: the password still works
        log.warning("console: WeCom did not say who signed in (%s)", wecom.wc.failure(exc))
        return refused("login.wecom_down", 502)
    with UnitOfWork(services.engine) as uow:
        try:
            person = console_access.wecom_person(uow.session, userid)
        except NotAllowed:
            log.info("console: WeCom member %s is no staff member", wecom.who(userid))
            return refused("login.wecom_unknown", 403)
        code_of_person = person.code
    return _signed_in(services, f"person:{code_of_person}", next)


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
