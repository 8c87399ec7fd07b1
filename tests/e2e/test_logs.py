"""What `griddesk serve` writes to its log with LOG_FORMAT=json, as an operator's collector reads it.

The real command runs in its own process on a socket the test bound (`--fd`), with the loopback
Telegram and WeChat: a resident files a case from the web chat, a grid worker acknowledges and
answers it, and residents file cases on Telegram and WeChat, each giving a phone number and a
room. Every line must be one JSON object; none at INFO or above may hold what residents wrote,
their phone number or their room; and the lines of each case carry its number, its channel and
the id of the request that brought it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from bot.logs import JsonFormatter, TextFormatter
from storage.log_context import log_context, note_case
from tests.fakes.serving import ServedApp
from tests.fakes.telegram_bot_api import FakeTelegram
from tests.fakes.wechat import FakeWeChat, new_openid

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
TOKEN = "123456:TEST"
SECRET = "log-test-Secret_1"
RESIDENT = 1001
# What residents and staff write: none of it, nor the phones and rooms in it, may reach a log line.
WEB_TEXT = "楼道灯坏了三天了，我家3单元502室，电话13812345678"
TELEGRAM_TEXT = "电梯又坏了，我住7单元1101室，联系电话13912345678"
WECHAT_TEXT = "路灯不亮了，我在2单元302室，手机13712345678"
STAFF_ANSWER = "明天上午电工上门，有事打0851-86861234"
PRIVATE = ("13812345678", "13912345678", "13712345678", "0851-86861234", "86861234",
           "502室", "1101室", "302室", "3单元", "7单元", "2单元",
           "楼道灯坏了", "电梯又坏了", "路灯不亮了", "电工上门", "王秀英")
STARTUP_SECONDS = 120.0
T = TypeVar("T")


def wait_for(found: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


class Serve:
    """`griddesk serve --fd N` in its own process; its stderr (the log) goes to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.log_path = log_path
        self.env = env

    def start(self) -> Serve:
        fd = self.sock.fileno()
        env = {**self.env, "TELEGRAM_WEBHOOK_URL": f"{self.url}/telegram/webhook"}
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--fd", str(fd)], env=env, pass_fds=[fd],
            stdout=subprocess.DEVNULL, stderr=self.log, cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.process.poll() is not None:
                raise AssertionError("griddesk serve stopped:\n" + self.log_path.read_text()[-3000:])
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("griddesk serve did not answer:\n" + self.log_path.read_text()[-3000:])
            time.sleep(0.2)

    def stop(self) -> list[str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.sock.close()
        return self.log_path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(tokens=[TOKEN], time_scale=0.01) as fake:
        fake.user(RESIDENT, "王秀英")
        yield fake


@pytest.fixture
def fake_wechat() -> Iterator[FakeWeChat]:
    fake = FakeWeChat(attempt_timeout=5.0)
    api = ServedApp(fake.api_app).start()
    fake.api_url = api.url  # type: ignore[attr-defined]
    yield fake
    api.stop()


def serve_env(database_url: str, telegram: FakeTelegram, wechat: FakeWeChat) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.upper().startswith(("DATABASE_URL", "REDIS_URL", "TELEGRAM_", "WECHAT_", "LOG_"))}
    return env | {
        "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "DATABASE_URL": database_url, "SECRET_KEY": "log-secret",
        "DEMO": "true", "CLARIFY_BELOW": "0", "SEND_IDLE_SECONDS": "0.05",
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": telegram.url,
        "TELEGRAM_BOT_USERNAME": "test_123456_bot", "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_PER_CHAT_PER_SECOND": "1000", "TELEGRAM_GLOBAL_PER_SECOND": "1000",
        "WECHAT_TOKEN": wechat.token, "WECHAT_APPID": wechat.appid, "WECHAT_SECRET": wechat.secret,
        "WECHAT_ENCODING_AES_KEY": wechat.encoding_aes_key,
        "WECHAT_API_BASE": wechat.api_url,  # type: ignore[attr-defined]
    }


def case_lines(lines: list[dict[str, Any]], number: str, action: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("case") == number and line["message"] == f"case event: {action}"]


@pytest.mark.slow
def test_json_log_lines_name_requests_and_cases_but_never_what_residents_wrote(
        sqlite_url: str, tmp_path: Path, fake_telegram: FakeTelegram, fake_wechat: FakeWeChat) -> None:
    # SQLite only: what is logged does not depend on the database, and the start is slow.
    serve = Serve(serve_env(sqlite_url, fake_telegram, fake_wechat), tmp_path / "serve.log").start()
    fake_wechat.app_url = f"{serve.url}/wechat"
    web = httpx.Client(base_url=serve.url, timeout=20)
    staff = httpx.Client(base_url=serve.url, timeout=20)
    try:
        # The web chat: a resident reports; the grid worker acknowledges and answers.
        web.post("/api/demo/persona", json={"who": "building:ZN-B01"}).raise_for_status()
        sent = web.post("/api/chat/send", json={"text": WEB_TEXT})
        sent.raise_for_status()
        web_request = sent.headers["x-request-id"]
        web_case = NUMBER.search(sent.json()["replies"][0]["text"]).group(0)  # type: ignore[union-attr]

        staff.post("/api/demo/persona", json={"who": "person:zhang_li"}).raise_for_status()
        card = wait_for(lambda: next((m for m in staff.get("/api/chat/inbox").json()["messages"]
                                      if web_case in m["text"]), None), "the case card")
        ack = next(b["action"] for row in card["buttons"] for b in row if b["label"] == "签收")
        staff.post("/api/chat/send", json={"action": ack}).raise_for_status()
        staff.post("/api/chat/send", json={"action": ack.replace("ack", "rep")}).raise_for_status()
        answered = staff.post("/api/chat/send", json={"text": STAFF_ANSWER})
        answered.raise_for_status()

        # A client's own request id comes back and names the request's lines; a malformed one
        # is replaced.
        assert web.get("/health", headers={"X-Request-ID": "probe-0001"}).headers["x-request-id"] == "probe-0001"
        forged = 'x", "level": "CRITICAL'
        assert web.get("/health", headers={"X-Request-ID": forged}).headers["x-request-id"] != forged

        # Telegram, through the webhook.
        fake_telegram.start_bot(RESIDENT, "b_ZN-B01")
        fake_telegram.inject_text(RESIDENT, TELEGRAM_TEXT)
        telegram_case = wait_for(lambda: next((m.group(0) for s in fake_telegram.sent(RESIDENT)
                                               if (m := NUMBER.search(s.text or ""))), None),
                                 "the Telegram resident's case number")

        # WeChat: a newcomer follows through the building's QR code, then writes.
        openid = new_openid()
        fake_wechat.blocking.follow(openid, scene="b_ZN-B03")
        fake_wechat.blocking.says(openid, WECHAT_TEXT)
        wechat_case = wait_for(lambda: next((m.group(0) for s in fake_wechat.seen(openid)
                                             if (m := NUMBER.search(s.text))), None),
                               "the WeChat resident's case number")
    finally:
        for client in (web, staff):
            client.close()
        raw = serve.stop()

    lines = [json.loads(line) for line in raw if line.strip()]  # every line is one JSON object
    assert any(line["level"] == "DEBUG" for line in lines)  # DEBUG was on: nothing was held back
    shown = [line for line in lines if line["level"] in ("INFO", "WARNING", "ERROR", "CRITICAL")]
    for line in shown:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert dt.datetime.fromisoformat(line["time"]).utcoffset() == dt.timedelta(0), line
        text = json.dumps(line, ensure_ascii=False)
        assert not [secret for secret in PRIVATE if secret in text], line
        # Nothing needed masking: the safety net in the formatter was not what kept them out.
        assert "[phone]" not in text, line

    (opened,) = case_lines(lines, web_case, "created")
    assert opened["channel"] == "web" and opened["request_id"] == web_request
    assert case_lines(lines, web_case, "acknowledged")[0]["channel"] == "web"
    assert case_lines(lines, web_case, "replied")[0]["request_id"] == answered.headers["x-request-id"]
    assert any(line.get("request_id") == "probe-0001" and line["logger"] == "uvicorn.access" for line in shown)
    (by_telegram,) = case_lines(lines, telegram_case, "created")
    # Each stored update is handled under its own id, not the first webhook request's.
    assert by_telegram["channel"] == "telegram" and by_telegram["request_id"].startswith("telegram-inbound-")
    (by_wechat,) = case_lines(lines, wechat_case, "created")
    assert by_wechat["channel"] == "wechat" and by_wechat["request_id"]


# --------------------------------------------------------------------------- the formatters


def written(formatter: logging.Formatter, emit: Callable[[logging.Logger], None]) -> list[str]:
    """The lines a real logger writes through `formatter`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("griddesk.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_a_json_line_carries_the_context_known_when_it_is_written() -> None:
    def emit(log: logging.Logger) -> None:
        log.info("before any request")
        with log_context(channel="telegram", request_id="req-0001"):
            log.info("message read")
            note_case("ZN-20261123-0001")
            try:
                raise ValueError("boom\nsecond line")
            except ValueError:
                log.exception("handling failed")
        log.info("after the request")

    lines = [json.loads(line) for line in written(JsonFormatter(), emit)]
    assert len(lines) == 4  # the traceback's newlines stay inside its line
    before, read, failed, after = lines
    assert before.keys() == {"time", "level", "logger", "message"}
    assert read["channel"] == "telegram" and read["request_id"] == "req-0001" and "case" not in read
    assert failed["case"] == "ZN-20261123-0001" and failed["level"] == "ERROR"
    assert "ValueError: boom" in failed["exc"] and "second line" in failed["exc"]
    assert after.keys() == before.keys()
    assert dt.datetime.fromisoformat(before["time"]).utcoffset() == dt.timedelta(0)


def test_a_case_noted_outside_a_context_does_not_stick_to_later_lines() -> None:
    # The deadline watch handles case after case in one long task.
    def emit(log: logging.Logger) -> None:
        note_case("ZN-20261123-0001")
        log.info("next action", extra={"case": "ZN-20261123-0002"})
        log.info("idle")

    named, idle = (json.loads(line) for line in written(JsonFormatter(), emit))
    assert named["case"] == "ZN-20261123-0002" and "case" not in idle


def test_phone_numbers_that_slip_into_a_line_are_masked_and_ids_are_not() -> None:
    def emit(log: logging.Logger) -> None:
        log.warning("call 13812345678 or +86 139-1234-5678? no: 0851-86861234, (010)62345678")
        log.info("case ZN-20261123-0007, update 100000001, at 1795000000123, chat 5512345678")

    masked, kept = written(TextFormatter(), emit)
    assert masked.endswith("call [phone] or [phone]? no: [phone], [phone]")
    assert kept.endswith("case ZN-20261123-0007, update 100000001, at 1795000000123, chat 5512345678")
    (line,) = (json.loads(x) for x in written(JsonFormatter(), lambda log: log.info("电话13812345678")))
    assert line["message"] == "电话[phone]"  # ensure_ascii=False: Chinese stays readable


def test_a_text_line_ends_with_its_context() -> None:
    def emit(log: logging.Logger) -> None:
        with log_context(channel="web", request_id="req-0002", case="ZN-20261123-0003"):
            log.info("case event: created")

    (line,) = written(TextFormatter(), emit)
    assert line.endswith("griddesk.test_logs: case event: created [case=ZN-20261123-0003 channel=web "
                         "request_id=req-0002]")
