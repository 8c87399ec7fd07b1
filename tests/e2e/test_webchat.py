"""The web chat over real HTTP: personas, a case's whole journey, sign-in, bad input, and the
history a reloaded page shows."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.settings import Settings
from bot.web import webchat
from bot.web.auth import COOKIE, sign
from storage import outbox
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.e2e.conftest import Running, start

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")


def wait_for_notice(client: httpx.Client, needle: str, after: int = 0, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in client.get("/api/chat/inbox", params={"after": after}).json()["messages"]:
            if needle in message["text"]:
                return message
        time.sleep(0.05)
    raise AssertionError(f"no notice containing {needle!r}")


def as_persona(web: Running, who: str) -> httpx.Client:
    client = web.client()
    client.post("/api/demo/persona", json={"who": who}).raise_for_status()
    return client


def reload(web: Running, client: httpx.Client) -> httpx.Client:
    """The same browser after a reload: only the session cookie is left of the page."""
    return web.client(cookies={COOKIE: client.cookies[COOKIE]})


def history(client: httpx.Client, **params: Any) -> dict[str, Any]:
    answer = client.get("/api/chat/history", params=params)
    answer.raise_for_status()
    return answer.json()


def test_resident_reports_and_worker_handles_it_in_the_browser_api(web: Running) -> None:
    personas = httpx.get(f"{web.url}/api/demo/personas").json()
    assert len(personas["buildings"]) == 40 and personas["residents"] and personas["staff"]
    assert httpx.get(f"{web.url}/").text.startswith("<!doctype html>")

    resident = as_persona(web, personas["residents"][0]["who"])
    assert resident.get("/api/session").json()["kind"] == "resident"
    answer = resident.post("/api/chat/send", json={"text": "楼道灯坏了三天了"}).json()["replies"][0]
    number = NUMBER.search(answer["text"]).group(0)  # type: ignore[union-attr]

    worker_code = next(s["who"] for s in personas["staff"] if s["who"] == "person:zhang_li")
    worker = as_persona(web, worker_code)
    arrived = wait_for_notice(worker, number)
    ack = next(b["action"] for row in arrived["buttons"] for b in row if b["label"] == "签收")
    worker.post("/api/chat/send", json={"action": ack}).raise_for_status()
    told = wait_for_notice(resident, "已由")
    assert "张丽" in told["text"]

    prompt = worker.post("/api/chat/send", json={"action": ack.replace("ack", "rep")}).json()["replies"][0]
    assert prompt["expects_text"]
    worker.post("/api/chat/send", json={"text": "明天上午电工上门更换"})
    assert "电工上门" in wait_for_notice(resident, "电工上门", after=told["id"])["text"]


def test_personal_links_sign_in_and_forgeries_do_not(web: Running) -> None:
    anonymous = web.client()
    assert anonymous.post("/api/chat/send", json={"text": "hi"}).status_code == 401
    token = sign("e2e-secret", "person:xu_ting")
    signed = web.client(follow_redirects=False)
    assert signed.get(f"/login/{token}").status_code == 303
    assert signed.get("/api/session").json()["name"]
    forged = token.rsplit("|", 1)[0] + "|AAAA"
    assert anonymous.get(f"/login/{forged}").status_code == 403


def test_bad_requests_get_clear_errors_and_change_nothing(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    bad_json = resident.post("/api/chat/send", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422
    huge = resident.post("/api/chat/send", content=b'{"text":"' + b"x" * 600_000 + b'"}',
                         headers={"content-type": "application/json"})
    assert huge.status_code == 413
    for hundred_kb in ("灯" * 34_000, "x" * 100_000):
        answer = resident.post("/api/chat/send", json={"text": hundred_kb}).json()["replies"][0]["text"]
        assert "太长" in answer
    assert resident.post("/api/chat/send", json={}).status_code == 422
    assert resident.post("/api/demo/persona", json={"who": "building:NOPE"}).status_code == 404
    assert resident.get("/api/chat/inbox").json()["messages"] == []
    # Ids past the id columns' range (32-bit on PostgreSQL), or negative, are refused before they
    # reach the database.
    for after in ("-51922277896122384384", "9223372036854775808", "2147483648", "-1"):
        assert resident.get("/api/chat/inbox", params={"after": after}).status_code == 422
    for before in ("notice:99999999999", "said:2147483648", "reply:2147483648"):
        assert resident.get("/api/chat/history", params={"before": before}).status_code == 422
    # A media id is looked up by its reference text: any number not shown to this person is 404.
    assert resident.get("/media/92233720368547758070").status_code == 404
    assert resident.get("/photos/x/92233720368547758070").status_code == 404


def test_health_reports_the_database(web: Running) -> None:
    health = httpx.get(f"{web.url}/health")
    assert health.status_code == 200 and health.json()["database"] == "ok"


def test_health_is_503_when_the_database_is_down(sqlite_url: str, clock: FixedClock) -> None:
    from storage.db import make_engine

    served, services = start(Settings(database_url=sqlite_url, secret_key="x", demo=True), clock)
    try:
        services.engine = make_engine("postgresql://nobody@127.0.0.1:1/none", pool_pre_ping=False)
        health = httpx.get(f"{served.url}/health")
        assert health.status_code == 503 and health.json()["database"].startswith("down")
    finally:
        served.stop()


def test_persona_picker_is_off_outside_the_demo(sqlite_url: str, clock: FixedClock) -> None:
    served, services = start(Settings(database_url=sqlite_url, secret_key="x", demo=False), clock)
    try:
        assert httpx.get(f"{served.url}/api/demo/personas").status_code == 404
        assert httpx.get(f"{served.url}/api/me").json() == {"demo": False}
    finally:
        served.stop()
        services.engine.dispose()


def test_a_reload_shows_what_was_said_and_answered_then_later_notices(web: Running, clock: FixedClock) -> None:
    who = httpx.get(f"{web.url}/api/demo/personas").json()["residents"][0]["who"]
    resident = as_persona(web, who)
    answer = resident.post("/api/chat/send", json={"text": "楼道灯坏了三天了"}).json()["replies"][0]
    number = NUMBER.search(answer["text"]).group(0)  # type: ignore[union-attr]
    clock.advance(dt.timedelta(minutes=1))
    worker = as_persona(web, "person:zhang_li")
    arrived = wait_for_notice(worker, number)
    ack = next(b for row in arrived["buttons"] for b in row if b["label"] == "签收")
    worker.post("/api/chat/send", json={"action": ack["action"], "label": ack["label"]}).raise_for_status()
    told = wait_for_notice(resident, "已由")

    page = history(reload(web, resident))
    items = [(m["kind"], m["text"]) for m in page["messages"]]
    assert items[:2] == [("said", "楼道灯坏了三天了"), ("reply", answer["text"])]
    assert ("notice", told["text"]) in items[2:]
    assert page["before"] is None
    # The notices are the inbox's, and polling carries on after the newest of them.
    inbox = resident.get("/api/chat/inbox").json()["messages"]
    assert [(m["id"], m["text"]) for m in page["messages"] if m["kind"] == "notice"] == \
        [(m["id"], m["text"]) for m in inbox]
    assert page["last_notice_id"] == inbox[-1]["id"]
    assert resident.get("/api/chat/inbox", params={"after": page["last_notice_id"]}).json()["messages"] == []
    assert all(m["at"].startswith("2026-11-23T02:0") for m in page["messages"])
    assert page["messages"][0]["action"] is None and "action" not in page["messages"][1]

    # The worker sees the case arrive, the button they pressed by its label, and the answer.
    worker_items = history(reload(web, worker))["messages"]
    kinds = [(m["kind"], m["text"]) for m in worker_items]
    pressed = kinds.index(("said", "签收"))
    assert worker_items[pressed]["action"] == ack["action"]
    assert kinds[pressed - 1] == ("notice", arrived["text"])
    assert kinds[pressed + 1][0] == "reply" and number in kinds[pressed + 1][1]


def test_history_pages_backwards_across_lines_and_notices(web: Running, clock: FixedClock) -> None:
    resident = as_persona(web, "building:ZN-B01")
    address = resident.get("/api/session").json()["address"]
    for n in range(4):
        resident.post("/api/chat/send", json={"text": f"你好 {n}"}).raise_for_status()
        if n == 1:
            # A notice written at the same moment as a turn comes after the turn's replies.
            with UnitOfWork(web.services.engine) as uow:
                outbox.enqueue(uow.session, channel="web", address=address, text="停水通知", now=clock.now())
                uow.commit()
            web.services.sender.wake()
            wait_for_notice(resident, "停水通知")
        clock.advance(dt.timedelta(seconds=30))

    whole = history(resident, limit=200)
    assert whole["before"] is None
    said = [m["text"] for m in whole["messages"] if m["kind"] == "said"]
    assert said == [f"你好 {n}" for n in range(4)]
    kinds = [m["kind"] for m in whole["messages"]]
    notice = kinds.index("notice")
    assert kinds[notice - 1] == "reply" and whole["messages"][notice + 1]["text"] == "你好 2"

    for limit in (1, 2, 3, 5):
        page = history(resident, limit=limit)
        seen = page["messages"]
        assert seen == whole["messages"][-limit:]
        while page["before"] is not None:
            page = history(resident, limit=limit, before=page["before"])
            assert 0 < len(page["messages"]) <= limit
            seen = page["messages"] + seen
        assert seen == whole["messages"], limit


def test_history_is_only_ever_the_signed_in_persons_own(web: Running) -> None:
    one = as_persona(web, "building:ZN-B01")
    two = as_persona(web, "building:ZN-B02")
    one.post("/api/chat/send", json={"text": "你好，我住一号楼"}).raise_for_status()
    two.post("/api/chat/send", json={"text": "你好，我住二号楼"}).raise_for_status()

    texts_one = [m["text"] for m in history(one)["messages"]]
    texts_two = [m["text"] for m in history(two)["messages"]]
    assert "你好，我住一号楼" in texts_one and "你好，我住二号楼" not in texts_one
    assert "你好，我住二号楼" in texts_two and "你好，我住一号楼" not in texts_two
    # A position in someone else's conversation is refused, not used to read around it.
    line_of_two = history(two)["messages"][-1]
    refused = one.get("/api/chat/history", params={"before": f"{line_of_two['kind']}:{line_of_two['id']}"})
    assert refused.status_code == 422
    for bad in ("nonsense", "said:", "said:-1", "notice:x", "said:１"):
        assert one.get("/api/chat/history", params={"before": bad}).status_code == 422, bad
    assert web.client().get("/api/chat/history").status_code == 401


def test_an_oversized_message_is_kept_short_with_its_refusal(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    resident.post("/api/chat/send", json={"text": "灯" * 100_000}).raise_for_status()
    said, refusal = history(resident)["messages"]
    limit = web.services.settings.max_message_chars
    assert said["kind"] == "said" and said["text"] == "灯" * limit + "…"
    assert refusal["kind"] == "reply" and "太长" in refusal["text"]


def test_a_turn_that_fails_to_commit_leaves_no_line_and_no_case(web: Running,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    resident = as_persona(web, "building:ZN-B01")
    real = webchat.chat_history.record_turn

    def record_then_fail(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        raise RuntimeError("the database went away before the commit")

    monkeypatch.setattr(webchat.chat_history, "record_turn", record_then_fail)
    assert resident.post("/api/chat/send", json={"text": "楼道灯坏了"}).status_code == 500
    monkeypatch.undo()
    # The server closes a connection that ended in an error, so ask on a fresh one.
    assert history(reload(web, resident))["messages"] == []
    with UnitOfWork(web.services.engine) as uow:
        assert uow.session.scalar(select(func.count()).select_from(t.Case)) == 0


def test_a_message_that_cannot_get_its_turn_is_refused_clearly_and_kept_nowhere(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    address = resident.get("/api/session").json()["address"]
    web.services.state.lock_wait = 0.2  # type: ignore[attr-defined]
    with web.services.state.lock(f"address:web:{address}"):  # an earlier message, stuck
        refused = resident.post("/api/chat/send", json={"text": "楼道灯坏了"})
    assert refused.status_code == 503 and "again" in refused.json()["detail"]
    assert history(reload(web, resident))["messages"] == []
    answer = reload(web, resident).post("/api/chat/send", json={"text": "楼道灯坏了"}).json()
    assert NUMBER.search(answer["replies"][0]["text"])


def test_what_was_sent_with_a_case_is_shown_only_to_who_may_see_the_case(web: Running) -> None:
    from storage import media
    from tests.fakes.wechat import tiny_png

    resident = as_persona(web, httpx.get(f"{web.url}/api/demo/personas").json()["residents"][0]["who"])
    answer = resident.post("/api/chat/send", json={"text": "楼道灯坏了三天了"}).json()["replies"][0]
    number = NUMBER.search(answer["text"]).group(0)  # type: ignore[union-attr]
    photo = tiny_png((9, 9, 9))
    with UnitOfWork(web.services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        kept = media.put(uow.session, photo, "image/png")
        orphan = media.put(uow.session, tiny_png((8, 8, 8)), "image/png")
        now = web.services.clock.now()
        uow.session.add_all([
            t.Attachment(case_id=case.id, kind="photo", ref=media.ref_of(kept), created_at=now),
            t.Attachment(case_id=case.id, kind="photo", ref="AgACAgIAAx0", created_at=now),
            t.Attachment(case_id=case.id, kind="location", ref="中南小区东门", latitude=26.5694,
                         longitude=106.7175, created_at=now)])
        uow.commit()
        kept_id, orphan_id = kept.id, orphan.id

    expected = [
        {"kind": "photo", "url": f"/media/{kept_id}"},
        {"kind": "photo", "url": None},  # known only by the platform's reference
        {"kind": "location", "latitude": 26.5694, "longitude": 106.7175, "label": "中南小区东门"},
    ]
    for who in (resident, as_persona(web, "person:zhang_li"), as_persona(web, "person:lin_hui")):
        listed = who.get(f"/api/cases/{number}/attachments")
        assert listed.status_code == 200
        assert [{k: v for k, v in a.items() if k not in ("id", "at")} for a in listed.json()] == expected
        got = who.get(f"/media/{kept_id}")
        assert (got.status_code, got.content, got.headers["content-type"]) == (200, photo, "image/png")
        # Bytes attached to no case are nobody's to see.
        assert who.get(f"/media/{orphan_id}").status_code == 404

    for stranger in (as_persona(web, "building:ZN-B20"), as_persona(web, "person:chen_jing")):
        assert stranger.get(f"/api/cases/{number}/attachments").status_code == 404
        assert stranger.get(f"/media/{kept_id}").status_code == 404
    for unknown in ("ZN-20200101-0001", "1", "99999999999999999999", "nonsense"):
        assert resident.get(f"/api/cases/{unknown}/attachments").status_code == 404, unknown
    assert resident.get("/media/99999999999999999999").status_code == 404
    assert web.client().get(f"/media/{kept_id}").status_code == 401
    assert web.client().get(f"/api/cases/{number}/attachments").status_code == 401


def test_figures_are_the_directors_whole_and_a_workers_own(web: Running) -> None:
    personas = httpx.get(f"{web.url}/api/demo/personas").json()
    resident = as_persona(web, personas["residents"][0]["who"])
    resident.post("/api/chat/send", json={"text": "楼道灯坏了三天了"}).raise_for_status()

    director = as_persona(web, "person:lin_hui")
    whole = director.get("/api/figures", params={"by": "worker"})
    assert whole.status_code == 200
    body = whole.json()
    assert body["by"] == "worker" and not body["own"] and body["total"]["cases"] == 1
    assert [row["name"] for row in body["rows"]] == ["张丽"]
    assert director.get("/api/figures", params={"period": "2020-01"}).json()["total"]["cases"] == 0

    own = as_persona(web, "person:zhang_li").get("/api/figures", params={"by": "community"}).json()
    assert own["own"] and [row["name"] for row in own["rows"]] == ["张丽"]
    assert own["rows"][0]["resolved"] == {"done": 0, "of": 1, "rate": 0.0}

    sheet = director.get("/api/figures", params={"by": "worker", "format": "csv"})
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
    assert "attachment" in sheet.headers["content-disposition"]
    assert sheet.content.startswith("\ufeff".encode())  # Excel reads the Chinese as UTF-8
    lines = sheet.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("工作人员,工单数,响应") and lines[1].startswith("张丽,1,")
    assert lines[-1].startswith("合计,1,")
    assert "format must be json or csv" in director.get("/api/figures", params={"format": "xls"}).text

    assert resident.get("/api/figures").status_code == 403
    assert "by must be one of" in director.get("/api/figures", params={"by": "street"}).json()["detail"]
    assert director.get("/api/figures", params={"period": "soon"}).status_code == 422
    assert web.client().get("/api/figures").status_code == 401
