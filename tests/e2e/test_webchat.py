"""The web chat over real HTTP: personas, a case's whole journey, sign-in and bad input."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from bot.settings import Settings
from bot.web.auth import sign
from storage.clock import FixedClock
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
