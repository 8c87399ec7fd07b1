"""The council board in a real browser: the secretary clicks the agenda's .docx and gets a Word
document that opens with the proposal on it."""

from __future__ import annotations

import docx
import pytest

from tests.e2e.conftest import Running
from tests.e2e.test_console_browser import quick_hashes, web
from tests.e2e.test_console_council import council_with_a_meeting

pytestmark = pytest.mark.slow
__all__ = ["quick_hashes", "web"]


def test_the_secretary_downloads_the_agenda_as_docx(web: Running, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    _, meeting_id, number = council_with_a_meeting(web)
    context = browser.new_context(accept_downloads=True, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{web.url}/console/login?next=/console/council")
    page.click("form[action='/console/demo/persona'] button[value=guo_xin]")
    expect(page.get_by_test_id("column-collection").get_by_test_id("co-signs")).to_have_text("附议 1")
    meeting = page.locator(f"[data-testid=meeting][data-id='{meeting_id}']")
    with page.expect_download() as info:
        meeting.get_by_test_id("docx-agenda").click()
    path = info.value.path()
    assert info.value.suggested_filename.endswith("agenda.docx")
    document = docx.Document(str(path))
    assert number in [row.cells[1].text for row in document.tables[0].rows[1:]]
    context.close()
