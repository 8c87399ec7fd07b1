"""The web chat in a real browser (Debian's chromium driven by playwright): after a reload a
case card's remaining steps still work, the chat opens with a greeting, a photo and the
browser's location go through the page, and the header stays on one line on a 390 px phone."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bot.settings import Settings
from storage.clock import FixedClock
from tests.e2e.conftest import Running, start

pytestmark = pytest.mark.slow

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")


@pytest.fixture
def web(sqlite_url: str, clock: FixedClock) -> Iterator[Running]:
    """The app on SQLite only: the PostgreSQL paths are the HTTP tests'."""
    served, services = start(Settings(database_url=sqlite_url, secret_key="e2e-secret", demo=True,
                                      send_idle_seconds=0.05), clock)
    running = Running(served.url, services)
    yield running
    served.stop()
    services.engine.dispose()


def _as(browser: object, web: Running, who: str, **context: object) -> object:
    """A page signed in as the persona `who` (the picker's own request, in the browser)."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    page = browser.new_context(locale="zh-CN", **context).new_page()  # type: ignore[arg-type]
    page.goto(web.url)
    page.request.post(f"{web.url}/api/demo/persona", data={"who": who})
    page.reload()
    return page


def test_after_a_reload_the_cards_other_steps_still_work(web: Running, browser: object) -> None:
    from playwright.sync_api import Page, expect

    said = httpx.Client(base_url=web.url)
    said.post("/api/demo/persona", json={"who": "building:ZN-B01"}).raise_for_status()
    text = said.post("/api/chat/send", json={"text": "楼道灯坏了三天了"}).json()["replies"][0]["text"]
    number = NUMBER.search(text).group(0)  # type: ignore[union-attr]
    said.close()

    page = _as(browser, web, "person:zhang_li")
    assert isinstance(page, Page)
    card = page.locator(".msg.notice", has_text=number)
    card.get_by_role("button", name="签收").click()
    expect(page.locator(".msg", has_text="已签收")).to_be_visible()

    page.reload()
    card = page.locator(".msg.notice", has_text=number)
    expect(card.get_by_role("button", name="签收")).to_be_disabled()
    expect(card.get_by_role("button", name="办结")).to_be_enabled()
    card.get_by_role("button", name="办结").click()
    expect(page.locator(".msg", has_text="请简要写明办理结果")).to_be_visible()
    page.fill("#text", "已更换灯泡")
    page.press("#text", "Enter")
    expect(page.locator(".msg", has_text="已办结")).to_be_visible()
    page.context.close()


def test_the_chat_opens_with_a_greeting(web: Running, browser: object) -> None:
    from playwright.sync_api import Page, expect

    page = _as(browser, web, "building:ZN-B01")
    assert isinstance(page, Page)
    greeting = page.locator(".msg.welcome")
    expect(greeting).to_contain_text("中南小区1栋")
    expect(greeting).to_contain_text("/status")
    page.context.close()

    staff = _as(browser, web, "person:guo_xin")
    assert isinstance(staff, Page)
    expect(staff.locator(".msg.welcome")).to_contain_text("议事会秘书")
    staff.context.close()


def test_a_photo_and_the_location_go_from_the_page(web: Running, browser: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    photo = tmp_path / "light.png"
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (30, 30, 30)).save(buffer, "PNG")
    photo.write_bytes(buffer.getvalue())

    page = _as(browser, web, "building:ZN-B01", geolocation={"latitude": 26.56861, "longitude": 106.71752},
               permissions=["geolocation"])
    assert isinstance(page, Page)
    page.fill("#text", "楼道灯坏了三天了")
    page.set_input_files("#photo", str(photo))
    filed = page.locator(".msg:not(.me)", has_text="ZN-")
    expect(filed).to_be_visible()
    number = NUMBER.search(filed.inner_text()).group(0)  # type: ignore[union-attr]
    expect(page.locator(".msg.me img")).to_be_visible()  # the page shows what was sent
    expect(filed.locator(".sent img")).to_be_visible()  # and the photo kept with the case

    page.click("#location-button")
    expect(page.locator(".msg.me", has_text="📍 26.56861, 106.71752")).to_be_visible()
    expect(page.locator(".msg:not(.me)", has_text="一句话")).to_be_visible()
    page.context.close()
    assert number


def test_the_header_stays_on_one_line_on_a_390px_phone(web: Running, browser: object) -> None:
    from playwright.sync_api import Page

    page = _as(browser, web, "resident:1", viewport={"width": 390, "height": 844})
    assert isinstance(page, Page)
    page.wait_for_selector("#chat:not([hidden])")
    boxes = {name: page.locator(sel).bounding_box()
             for name, sel in (("header", "header"), ("title", "#title"), ("who", "#who"),
                               ("switch", "#switch"))}
    header, title, who, switch = (boxes[k] for k in ("header", "title", "who", "switch"))
    assert header and title and who and switch
    assert header["width"] <= 390 and header["height"] <= 48
    # Title, name and button side by side on one row, none over another, the name readable.
    assert title["x"] + title["width"] <= who["x"] + 1 and who["x"] + who["width"] <= switch["x"] + 1
    assert abs((title["y"] + title["height"] / 2) - (who["y"] + who["height"] / 2)) < 4
    assert who["width"] > 60 and switch["x"] + switch["width"] <= 390
    page.context.close()
