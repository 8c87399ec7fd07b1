"""Signing in to the console with WeCom (企业微信), over real HTTP: griddesk served on 127.0.0.1,
the loopback WeCom (tests/fakes/wecom.py) answering `auth/getuserinfo`, and a browser that
follows WeCom's OAuth (inside the WeCom app) or QR login (a desktop browser) as WeCom would send
it back."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy import select

from bot.app import Services, build_app, build_services
from bot.settings import Settings
from bot.web import access_log
from bot.web.console.web import LOGIN_NONCE
from handlers.notify import ensure_identity
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp
from tests.fakes.wecom import FakeWeCom

DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
IN_WECOM = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Mobile/15E148 wxwork/4.1.20 MicroMessenger/7.0.1 Language/zh ColorScheme/Light")
STALE = "登录已失效"
UNKNOWN = "未登记为工作人员"


@dataclass
class Site:
    wecom: FakeWeCom
    services: Services
    url: str
    clock: FixedClock
    clients: list[httpx.Client] = field(default_factory=list)

    def browser(self, user_agent: str = DESKTOP) -> httpx.Client:
        client = httpx.Client(base_url=self.url, trust_env=False, follow_redirects=False, timeout=10,
                              headers={"user-agent": user_agent})
        self.clients.append(client)
        return client

    def to_wecom(self, browser: httpx.Client, next_: str = "") -> str:
        """The sign-in page's WeCom button, pressed: where the browser is sent."""
        page = browser.get("/console/login", params={"next": next_} if next_ else None)
        assert page.status_code == 200 and "企业微信登录" in page.text
        start = browser.get("/console/login/wecom/start", params={"next": next_} if next_ else None)
        assert start.status_code == 303, start.text
        return start.headers["location"]

    def sign_in(self, browser: httpx.Client, userid: str, next_: str = "") -> httpx.Response:
        """The whole round: our page → WeCom, who knows the member → back to us."""
        back = self.wecom.sign_in(self.to_wecom(browser, next_), userid)
        assert back.startswith(f"{self.url}/console/login/wecom")
        return browser.get(back)


Factory = Callable[..., Site]


@pytest.fixture
def site(sqlite_url: str, clock: FixedClock) -> Iterator[Factory]:
    running: list[tuple[list[ServedApp], Site]] = []

    def make(database_url: str = sqlite_url) -> Site:
        wecom = FakeWeCom(clock=clock)
        for userid, name in (("zhangli", "张丽"), ("wangfang", "王芳"), ("xuting", "徐婷"), ("visitor", "访客")):
            wecom.add_member(userid, name)
        api = ServedApp(wecom.api_app).start()
        settings = Settings(database_url=database_url, secret_key="wecom-login-secret", demo=False,
                            wecom_corp_id=wecom.corp_id, wecom_agent_id=wecom.agent_id, wecom_secret=wecom.secret,
                            wecom_token=wecom.token, wecom_encoding_aes_key=wecom.encoding_aes_key,
                            wecom_api_base=f"{api.url}/cgi-bin/")
        services = build_services(settings, clock=clock, classifier=KeywordClassifier())
        served = ServedApp(build_app(services))
        services.settings.public_url = served.url  # the redirect URI WeCom sends the browser back to
        served.start()
        made = Site(wecom, services, served.url, clock)
        running.append(([served, api], made))
        return made

    yield make
    for servers, made in running:
        for client in made.clients:
            client.close()
        for server in servers:
            server.stop()
        made.services.engine.dispose()


@pytest.fixture
def access_records() -> Iterator[Callable[[], list[str]]]:
    """Call it once the site is served (uvicorn sets its loggers' levels then): from that moment,
    what uvicorn's access log writes, with the filter `griddesk serve` installs."""
    logger = logging.getLogger(access_log.ACCESS_LOGGER)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler, level = Keep(), logger.level
    installed = access_log.install()

    def listen() -> list[str]:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        return lines

    yield listen
    logger.removeHandler(handler)
    logger.removeFilter(installed)
    logger.setLevel(level)


def session_holder(browser: httpx.Client) -> str:
    """Whom the console's header shows as signed in, or why the console does not open."""
    cases = browser.get("/console/cases")
    if cases.status_code != 200:
        return f"{cases.status_code} {cases.headers.get('location', '')}"
    shown = re.search(r"<header>.*?<span>([^<]+)</span>", cases.text, re.DOTALL)
    assert shown is not None, cases.text
    return shown.group(1)


async def test_a_staff_member_signs_in_with_wecom_on_the_desktop_and_in_the_app(
        site: Factory, database_url: str, access_records: Callable[[], list[str]]) -> None:
    app = site(database_url)
    logged = access_records()

    # A desktop browser goes to WeCom's QR login for this app; scanned, it comes back signed in.
    desktop = app.browser(DESKTOP)
    authorize = app.to_wecom(desktop, "/console/cases?state=open")
    target = urlsplit(authorize)
    query = dict(parse_qsl(target.query))
    assert (target.netloc, target.path) == ("login.work.weixin.qq.com", "/wwlogin/sso/login")
    assert query["login_type"] == "CorpApp" and query["appid"] == app.wecom.corp_id
    assert query["agentid"] == str(app.wecom.agent_id)
    assert query["redirect_uri"].startswith(f"{app.url}/console/login/wecom")
    back = app.wecom.sign_in(authorize, "zhangli")
    code = dict(parse_qsl(urlsplit(back).query))["code"]
    signed_in = desktop.get(back)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/console/cases?state=open"
    assert session_holder(desktop) == "张丽"

    # Inside the WeCom app: its OAuth (snsapi_base), no QR code to scan.
    phone = app.browser(IN_WECOM)
    oauth = urlsplit(app.to_wecom(phone))
    assert (oauth.netloc, oauth.path, oauth.fragment) == ("open.weixin.qq.com", "/connect/oauth2/authorize",
                                                          "wechat_redirect")
    assert dict(parse_qsl(oauth.query))["scope"] == "snsapi_base"
    landed = phone.get(app.wecom.sign_in(oauth.geturl(), "wangfang"))
    assert landed.status_code == 303 and landed.headers["location"] == "/console/cases"
    assert session_holder(phone) == "王芳"

    # The sign-in code names a staff member: it never reaches the access log.
    callbacks = [line for line in logged if "/console/login/wecom" in line]
    assert callbacks and all("?" not in line for line in callbacks), callbacks
    ours = [line for line in logged if "/cgi-bin/" not in line]  # the loopback WeCom logs to the same logger
    assert not any(code in line for line in ours)


async def test_a_state_works_once_and_only_while_it_is_fresh(site: Factory) -> None:
    app = site()
    browser = app.browser()
    authorize = app.to_wecom(browser)
    kept = browser.cookies[LOGIN_NONCE]
    assert browser.get(app.wecom.sign_in(authorize, "zhangli")).status_code == 303

    # The same state again, with a fresh code and this browser's cookie: refused.
    other = app.browser()
    other.cookies.set(LOGIN_NONCE, kept)
    again = other.get(app.wecom.sign_in(authorize, "zhangli"))
    assert again.status_code == 403 and STALE in again.text
    assert session_holder(other).startswith("303 /console/login")

    # A state forwarded to another browser (a sign-in link sent to someone): refused.
    stranger = app.browser()
    assert stranger.get("/console/login").status_code == 200 and LOGIN_NONCE in stranger.cookies
    forwarded = stranger.get(app.wecom.sign_in(app.to_wecom(app.browser()), "zhangli"))
    assert forwarded.status_code == 403 and STALE in forwarded.text

    # A state older than ten minutes: refused, though WeCom's code is fresh.
    late = app.browser()
    authorize = app.to_wecom(late)
    app.wecom.advance(11 * 60)
    assert late.get(app.wecom.sign_in(authorize, "zhangli")).status_code == 403

    # A code WeCom does not know (used, expired or made up): 40029, refused.
    bogus = app.browser()
    back = app.wecom.sign_in(app.to_wecom(bogus), "zhangli")
    made_up = back.replace("code=", "code=x", 1)
    refused = bogus.get(made_up)
    assert refused.status_code == 403 and STALE in refused.text
    assert session_holder(bogus).startswith("303 /console/login")


async def test_only_an_active_staff_member_gets_in_and_never_a_resident(site: Factory) -> None:
    app = site()
    with UnitOfWork(app.services.engine) as uow:
        xu = uow.session.scalars(select(t.Person).where(t.Person.code == "xu_ting")).one()
        xu.active = False
        # A resident who happens to be a member of the organisation, even bound to its id.
        resident = uow.session.scalars(select(t.Resident).order_by(t.Resident.id)).first()
        if resident is None:
            community = uow.session.scalars(select(t.Community)).one()
            resident = t.Resident(community_id=community.id or 0, name="李明", created_at=app.clock.now())
            uow.session.add(resident)
            uow.session.flush()
        ensure_identity(uow.session, "wecom", "liming", app.clock.now(), resident=resident)
        uow.commit()
    app.wecom.add_member("liming", "李明")

    for userid in ("visitor", "xuting", "liming", "wx-outsider"):  # the last is no member at all
        browser = app.browser()
        refused = app.sign_in(browser, userid)
        assert refused.status_code == 403 and UNKNOWN in refused.text, (userid, refused.text)
        assert "griddesk_session" not in browser.cookies
        assert session_holder(browser).startswith("303 /console/login"), userid
