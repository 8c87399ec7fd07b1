"""What the web app refuses and how, over real HTTP on loopback: bodies past the cap however they
are sent, the demo picker in production, Redis being down, and a keep-alive connection that
must survive a 500."""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func
from sqlalchemy import select as sql_select

from bot.app import MAX_BODY_BYTES, build_app, build_services
from bot.settings import Settings
from bot.web import webchat
from storage import tables as t
from storage.clock import FixedClock
from storage.state import RedisStateStore
from storage.unit_of_work import UnitOfWork
from tests.e2e.conftest import Running, start
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp
from tests.fakes.telegram_bot_api import FakeTelegram

CHUNK = 64 * 1024
TOTAL = 200 * 1024 * 1024  # what the client means to send, were it let
TG_TOKEN, TG_SECRET = "123456:LIMITS", "limits-Secret_1"


def chat_lines(services: Any) -> int:
    with UnitOfWork(services.engine) as uow:
        return int(uow.session.scalar(sql_select(func.count()).select_from(t.ChatLine)) or 0)


def inbound(services: Any) -> int:
    with UnitOfWork(services.engine) as uow:
        return int(uow.session.scalar(sql_select(func.count()).select_from(t.Inbound)) or 0)


def post_chunked(url: str, path: str, headers: dict[str, str]) -> tuple[bytes, int]:
    """POST a 200 MB JSON body in chunks (Transfer-Encoding: chunked, no Content-Length) over a
    raw socket, stopping as soon as the server answers. Returns the answer and the bytes sent."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
            "Transfer-Encoding: chunked", *(f"{k}: {v}" for k, v in headers.items())]
    sent = 0
    answer = b""
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        first = b'{"text": "'
        while sent < TOTAL:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            data = first + b"x" * (CHUNK - len(first))
            first = b""
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            except OSError:  # the server closed the connection: read what it answered
                break
            sent += len(data)
        while b"\r\n\r\n" not in answer:
            received = sock.recv(65536)
            if not received:
                break
            answer += received
    finally:
        sock.close()
    return answer, sent


@pytest.fixture
def telegram_web(sqlite_url: str, clock: FixedClock) -> Iterator[Running]:
    """The app with the Telegram webhook on (and its secret), on SQLite."""
    with FakeTelegram(tokens=[TG_TOKEN], time_scale=0.01) as fake:
        settings = Settings(database_url=sqlite_url, secret_key="e2e-secret", demo=True, send_idle_seconds=0.05,
                            telegram_bot_token=TG_TOKEN, telegram_api_base=fake.url,
                            telegram_webhook_url="http://127.0.0.1:9/telegram/webhook",
                            telegram_webhook_secret=TG_SECRET)
        services = build_services(settings, clock=clock, classifier=KeywordClassifier())
        served = ServedApp(build_app(services))
        services.settings.telegram_webhook_url = f"{served.url}/telegram/webhook"
        served.start()
        running = Running(served.url, services)
        try:
            yield running
        finally:
            for client in running.clients:
                client.close()
            served.stop()
            services.engine.dispose()


def test_a_chunked_body_past_the_cap_is_refused_before_the_client_has_sent_it(telegram_web: Running) -> None:
    resident = telegram_web.client()
    resident.post("/api/demo/persona", json={"who": "building:ZN-B01"}).raise_for_status()
    cookie = f"griddesk_session={resident.cookies['griddesk_session']}"
    for path, headers in (("/api/chat/send", {}),                      # the review's case: no cookie
                          ("/api/chat/send", {"Cookie": cookie}),
                          ("/telegram/webhook", {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})):
        answer, sent = post_chunked(telegram_web.url, path, headers)
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
        # Refused once the cap was passed: the client was stopped far short of its 200 MB (what it
        # sent beyond the cap sat in the sockets' buffers).
        assert MAX_BODY_BYTES < sent < TOTAL // 4, (path, sent)
    # A declared length past the cap is refused before a byte of the body is read.
    parts = urlsplit(telegram_web.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"POST /api/chat/send HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    assert chat_lines(telegram_web.services) == 0
    assert inbound(telegram_web.services) == 0


def test_a_500_keeps_the_keep_alive_connection_usable(web: Running, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    resident = web.client()
    resident.post("/api/demo/persona", json={"who": "building:ZN-B01"}).raise_for_status()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database went away before the commit")

    monkeypatch.setattr(webchat.chat_history, "record_turn", fail)
    failed = resident.post("/api/chat/send", json={"text": "楼道灯坏了"})
    assert failed.status_code == 500 and failed.json() == {"detail": "internal error"}
    monkeypatch.undo()
    after = resident.get("/api/chat/history")
    assert after.status_code == 200 and after.json()["messages"] == []
    # The same TCP connection served both: the server did not drop it after the error.
    ports = {r.extensions["network_stream"].get_extra_info("client_addr") for r in (failed, after)}
    assert len(ports) == 1
    # The failure itself is logged once, with its traceback.
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]) == 1


def test_production_refuses_demo_true() -> None:
    with pytest.raises(ValidationError, match="DEMO=true is refused in production"):
        Settings(environment="production", secret_key="a-real-secret-for-this-test", demo=True)


def test_production_never_serves_the_persona_picker(sqlite_url: str, clock: FixedClock) -> None:
    # The example community is loaded into the empty database, which elsewhere turns the picker on.
    settings = Settings(environment="production", database_url=sqlite_url,
                        secret_key="a-real-secret-for-this-test")
    served, services = start(settings, clock)
    try:
        with httpx.Client(base_url=served.url, timeout=10) as anonymous:
            assert anonymous.get("/api/me").json() == {"demo": False}
            assert anonymous.get("/api/demo/personas").status_code == 404
            assert anonymous.post("/api/demo/persona", json={"who": "person:lin_hui"}).status_code == 404
            assert "griddesk_session" not in anonymous.cookies
            assert anonymous.get("/api/figures").status_code == 401
    finally:
        served.stop()
        services.engine.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_redis_down_is_a_clean_503_with_retry_after(sqlite_url: str, clock: FixedClock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on this port: Redis is down from the first request on.
    redis_url = f"redis://127.0.0.1:{_free_port()}/0"
    settings = Settings(database_url=sqlite_url, secret_key="e2e-secret", demo=True, redis_url=redis_url)
    services = build_services(settings, clock=clock, classifier=KeywordClassifier(),
                              state=RedisStateStore(redis_url))
    with ServedApp(build_app(services)) as served, httpx.Client(base_url=served.url, timeout=10) as resident:
        resident.post("/api/demo/persona", json={"who": "building:ZN-B01"}).raise_for_status()
        for _ in range(2):  # and the connection stays usable
            answer = resident.post("/api/chat/send", json={"text": "楼道灯坏了"})
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) > 0 and "try again" in answer.json()["detail"]
    services.engine.dispose()
    assert chat_lines(services) == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "state store" in r.getMessage()]
    assert len(warnings) == 2 and all(r.exc_info is None for r in warnings)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
