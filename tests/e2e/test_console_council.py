"""The council board (/console/council) over real HTTP: proposals by stage with co-signature
counts, the meetings, and the agenda as .docx and .md — the link chat's /export now answers
with; for the council secretary and the director only."""

from __future__ import annotations

import io
import re

import docx
import httpx

from tests.e2e.conftest import Running
from tests.e2e.test_console import as_persona

PROPOSAL = re.compile(r"ZN-P-\d{4}-\d{4}")


def says(client: httpx.Client, text: str) -> str:
    reply: str = client.post("/api/chat/send", json={"text": text}).json()["replies"][0]["text"]
    return reply


def council_with_a_meeting(web: Running) -> tuple[httpx.Client, int, str]:
    """The secretary schedules a collection meeting; a resident proposes, another co-signs."""
    secretary = as_persona(web, "person:guo_xin")
    said = says(secretary, "/meeting collection 2026-11-28 19:00 中南社区活动室")
    meeting_id = int(re.search(r"编号 (\d+)", said).group(1))  # type: ignore[union-attr]
    residents = httpx.get(f"{web.url}/api/demo/personas").json()["residents"]
    proposer = as_persona(web, residents[0]["who"])
    number = PROPOSAL.search(says(proposer, "/propose 建议在中南小区增设健身器材"))
    assert number, "no proposal number"
    says(as_persona(web, residents[1]["who"]), f"/cosign {number.group(0)}")
    return secretary, meeting_id, number.group(0)


def test_the_board_shows_proposals_by_stage_with_their_co_signatures(web: Running) -> None:
    secretary, meeting_id, number = council_with_a_meeting(web)
    board = secretary.get("/console/council")
    assert board.status_code == 200
    column = board.text.split('data-testid="column-collection"', 1)[1].split("</section>", 1)[0]
    assert f'data-number="{number}"' in column and "附议 1" in column
    assert f'data-id="{meeting_id}"' in board.text
    assert as_persona(web, "person:lin_hui").get("/console/council").status_code == 200  # the director
    for who in ("person:zhang_li", "person:xu_ting"):  # a grid worker; the front desk alone
        assert as_persona(web, who).get("/console/council").status_code == 403
        assert as_persona(web, who).get(f"/console/council/meetings/{meeting_id}/export.docx").status_code == 403


def test_export_in_chat_gives_a_link_that_downloads_the_agenda(web: Running) -> None:
    secretary, meeting_id, number = council_with_a_meeting(web)
    said = says(secretary, f"/export {meeting_id} docx")
    link = re.search(r"https?://\S+/console/council/meetings/\d+/export\.docx\S*", said)
    assert link, said
    path = "/" + link.group(0).split("/", 3)[3]
    stranger = web.client().get(path)
    assert stranger.status_code == 303 and "/console/login" in stranger.headers["location"]
    download = secretary.get(path)
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    document = docx.Document(io.BytesIO(download.content))
    assert document.paragraphs[0].text == "中南社区居民议事会 意见收集会 议程"
    assert [r.cells[1].text for r in document.tables[0].rows[1:]] == [number]

    text = says(secretary, f"/export {meeting_id}")
    assert "|" not in text and number in text  # readable in chat, not a Markdown table
    md_link = re.search(r"/console/council/meetings/\d+/export\.md", text)
    assert md_link, text
    markdown = secretary.get(md_link.group(0))
    assert markdown.status_code == 200 and markdown.text.startswith("# 中南社区居民议事会 意见收集会 议程")
    # On the page the paper is a table, not pipes.
    page = secretary.get(f"/console/council/meetings/{meeting_id}")
    assert page.status_code == 200 and "<table" in page.text and number in page.text and "|" not in page.text
    assert secretary.get("/console/council/meetings/99999/export.md").status_code == 404
    assert secretary.get(f"/console/council/meetings/{meeting_id}/export.md?paper=x").status_code == 422
