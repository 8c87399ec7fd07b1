"""Two `griddesk serve` processes on one PostgreSQL database and one Redis take a bounded stream
of web chat messages while one of them is killed with SIGKILL and restarted, and Redis is
restarted. Residents send each message with a client id and send it again, with the same id, to
the other process when an answer is lost (a refused connection, a timeout, a 5xx).

What must hold afterwards:

- every message answered 2xx is stored exactly once (one "in" chat line with its client id);
- no case is filed twice for one message (each message's text carries its own tag);
- notices: staff are on Telegram (a fake Bot API on loopback), where a repeat is visible. Every
  outbox row marked sent reached its chat, and a row reached its chat more than once only if it
  was in flight in the killed sender: held by a lease at the kill and left untouched by the
  surviving sender for the next second (so neither marked nor claimed again by it). The number
  of such repeats is at most the number of those rows.

Redis and the serve processes are this test's own: Redis runs on a free port with no
persistence, so its restart also frees the address locks the killed process held.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select
from sqlmodel import col

from storage import db
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.conftest import reset_postgres
from tests.fakes.telegram_bot_api import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:fault-test-token"
RESIDENTS = 12
MESSAGES_EACH = 8
KILL_AFTER_ANSWERED = 30  # the kill lands in the first third of the stream
# The fake Bot API takes this long over every sendMessage, so the killed sender has notices in
# flight and the bound on repeats is exercised, not met by 0 ≤ 0.
SEND_SECONDS = 0.1
LEASE_SECONDS = 3  # a killed sender's claims come due again quickly
TEXTS = ["楼道灯坏了", "电梯停了，老人下不了楼", "垃圾好几天没人清运", "下水道堵了", "小区路灯不亮"]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (httpx.TransportError, redis.exceptions.ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


class RedisServer:
    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port)
        wait_until(client.ping, "redis-server did not answer", 10)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Serve:
    """One `griddesk serve` process on a fixed port (a restart comes back on the same one)."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.env, self.log_dir = name, env, log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"serve-{self.name}-{self.starts}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "bot.cli", "serve", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_until(lambda: httpx.get(f"{self.url}/health", timeout=2).status_code == 200,
                       f"serve {self.name} did not become healthy (see {self.log_dir})", 120)
        except AssertionError:
            self.process.send_signal(signal.SIGABRT)  # its log gets every thread's stack
            self.process.wait(10)
            raise

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Stream:
    answered: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # client id → replies
    unanswered: list[str] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)  # a 4xx: nothing to retry
    retries: int = 0
    tags: dict[str, str] = field(default_factory=dict)  # client id → the tag in its text
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Disposing:
    engine: Any

    def stop(self) -> None:
        self.engine.dispose()


@contextmanager
def cleanup(*stoppable: object) -> Iterator[None]:
    try:
        yield
    finally:
        for thing in stoppable:
            thing.stop()  # type: ignore[attr-defined]


def test_two_serve_processes_survive_a_kill_and_a_redis_restart(tmp_path: Path) -> None:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set: the two-process fault test needs PostgreSQL")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the fault test starts and restarts its own Redis")
    reset_postgres(url)

    redis_server = RedisServer(free_port(), tmp_path / "redis.log")
    fake = FakeTelegram([TOKEN]).start()
    env = {
        **os.environ, "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "ENVIRONMENT": "development", "DEMO": "true", "SECRET_KEY": "fault-test-secret",
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": fake.url, "TELEGRAM_POLL": "false",
        "TELEGRAM_PER_CHAT_PER_SECOND": "1000", "TELEGRAM_GLOBAL_PER_SECOND": "1000",
        "SEND_LEASE_SECONDS": str(LEASE_SECONDS), "SEND_IDLE_SECONDS": "0.1",
    }
    one, two = Serve("one", env, tmp_path), Serve("two", env, tmp_path)
    engine = db.make_engine(url)
    with cleanup(fake, redis_server, one, two, Disposing(engine)):
        fake.fail_next(None, method="sendMessage", delay=SEND_SECONDS)
        redis_server.start()
        one.start()  # loads the example community into the empty database
        chats = bind_staff_to_telegram(engine, fake)
        two.start()
        cookies = sign_in_residents(one.url)

        stream = Stream()
        killed: dict[str, set[int]] = {}
        chaos = threading.Thread(target=break_things, args=(stream, one, redis_server, engine, killed))
        chaos.start()
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda n: resident_sends(n, cookies[n], (one, two), stream), range(RESIDENTS)))
        chaos.join()
        wait_until(lambda: nothing_pending(engine), "the outbox did not drain", 90)

        figures = measure(engine, fake, chats, stream, killed["in_flight"])

    print("\nfault test figures:", ", ".join(f"{k} {v}" for k, v in figures.items()))
    assert not stream.refused, f"messages refused with a 4xx: {stream.refused[:5]}"
    assert figures["answered"] >= RESIDENTS * MESSAGES_EACH * 0.9, "the stream mostly went unanswered"
    assert figures["stored_answered"] == figures["answered"], "an answered message was not stored"
    assert figures["doubled"] == 0, "a message was stored twice"
    assert figures["cases_doubled"] == 0, "a message filed two cases"
    assert figures["notices_lost"] == 0, "a notice marked sent never reached its chat"
    assert figures["repeats_outside_in_flight"] == 0, "a notice not in flight at the kill was repeated"
    assert figures["repeats"] <= figures["in_flight_at_kill"]
    assert figures["cases"] > 0 and figures["telegram_notices"] > 0


def bind_staff_to_telegram(engine: object, fake: FakeTelegram) -> dict[int, int]:
    """Every staff member gets a Telegram chat with the bot; returns chat id → person id."""
    chats = {}
    now = dt.datetime.now(dt.UTC)
    with UnitOfWork(engine) as uow:  # type: ignore[arg-type]
        for person in uow.session.scalars(select(t.Person).where(col(t.Person.active).is_(True))):
            chat = 700_000 + (person.id or 0)
            fake.user(chat, person.name)
            fake.start_bot(chat)
            uow.session.add(t.Identity(channel="telegram", address=str(chat), person_id=person.id,
                                       created_at=now))
            chats[chat] = person.id or 0
        uow.commit()
    return chats


def sign_in_residents(base: str) -> list[dict[str, str]]:
    buildings = httpx.get(f"{base}/api/demo/personas").json()["buildings"]
    cookies = []
    for n in range(RESIDENTS):
        answer = httpx.post(f"{base}/api/demo/persona", json={"who": buildings[n % len(buildings)]["who"]})
        answer.raise_for_status()
        cookies.append(dict(answer.cookies))
    return cookies


def resident_sends(n: int, cookies: dict[str, str], serves: tuple[Serve, Serve], stream: Stream) -> None:
    """One resident's messages, one after another; a lost answer is asked again, same id, of the
    other process."""
    for m in range(MESSAGES_EACH):
        tag = f"[r{n:02d}-m{m:02d}]"
        client_id = f"{uuid.uuid4()}"
        body = {"text": f"{TEXTS[(n + m) % len(TEXTS)]} {tag}", "client_id": client_id}
        with stream.lock:
            stream.tags[client_id] = tag
        target = (n + m) % 2
        deadline = time.monotonic() + 30
        while True:
            serve = serves[target]
            try:
                answer = httpx.post(f"{serve.url}/api/chat/send", json=body, cookies=cookies, timeout=10)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code < 500:
                with stream.lock:
                    if answer.status_code < 300:
                        stream.answered[client_id] = answer.json()["replies"]
                    else:
                        stream.refused.append((client_id, answer.status_code))
                break
            if time.monotonic() > deadline:
                with stream.lock:
                    stream.unanswered.append(client_id)
                break
            with stream.lock:
                stream.retries += 1
            target = 1 - target
            time.sleep(random.uniform(0.05, 0.2))


def break_things(stream: Stream, victim: Serve, redis_server: RedisServer, engine: object,
                 out: dict[str, set[int]]) -> None:
    """SIGKILL one process midway, note what its sender held, restart Redis, restart the process."""
    wait_until(lambda: len(stream.answered) >= KILL_AFTER_ANSWERED, "the stream did not get going", 60)
    victim.kill()
    held = leased(engine)
    time.sleep(1.0)
    # In flight in the killed sender: held at the kill and untouched a second later. The survivor
    # marks what it sends within milliseconds, so what it held then has moved on by now.
    still = leased(engine)
    out["in_flight"] = {row_id for row_id, until in held.items() if still.get(row_id) == until}
    redis_server.stop()
    time.sleep(0.5)
    redis_server.start()
    victim.start()


def leased(engine: object) -> dict[int, dt.datetime]:
    """Pending outbox rows held until later than now (a sender's lease), by id."""
    now = dt.datetime.now(dt.UTC)
    with UnitOfWork(engine) as uow:  # type: ignore[arg-type]
        return {r.id or 0: r.next_attempt_at for r in uow.session.scalars(
            select(t.Outbox).where(col(t.Outbox.state) == t.OutboxState.PENDING,
                                   col(t.Outbox.next_attempt_at) > now))}


def nothing_pending(engine: object) -> bool:
    with UnitOfWork(engine) as uow:  # type: ignore[arg-type]
        return uow.session.scalars(select(t.Outbox.id).where(
            col(t.Outbox.state) == t.OutboxState.PENDING)).first() is None


def measure(engine: object, fake: FakeTelegram, chats: dict[int, int], stream: Stream,
            in_flight: set[int]) -> dict[str, int]:
    with UnitOfWork(engine) as uow:  # type: ignore[arg-type]
        s = uow.session
        said = list(s.scalars(select(t.ChatLine).where(col(t.ChatLine.direction) == "in")))
        case_texts = list(s.scalars(select(t.Case.text)))
        notices = list(s.scalars(select(t.Outbox).where(col(t.Outbox.channel) == "telegram")))
        web_sent = list(s.scalars(select(t.Outbox.id).where(
            col(t.Outbox.channel) == "web", col(t.Outbox.state) == t.OutboxState.SENT)))
    by_client = Counter(line.client_id for line in said if line.client_id)
    lines_by_tag = Counter(tag for line in said for tag in stream.tags.values() if tag in line.text)
    cases_by_tag = Counter(tag for text in case_texts for tag in stream.tags.values() if tag in text)

    # Repeats: per chat, what the fake Bot API received beyond the rows marked sent, by text.
    repeats = outside = lost = 0
    for chat in chats:
        rows = [r for r in notices if r.address == str(chat) and r.state == t.OutboxState.SENT]
        received = Counter(m.text for m in fake.sent(chat, TOKEN))
        expected = Counter(r.text for r in rows)
        lost += sum((expected - received).values())
        for text, extra in (received - expected).items():
            repeats += extra
            if not any(r.text == text and r.id in in_flight for r in rows):
                outside += extra
    return {
        "messages": RESIDENTS * MESSAGES_EACH,
        "answered": len(stream.answered),
        "retries": stream.retries,
        "unanswered": len(stream.unanswered),
        "stored_answered": sum(1 for cid in stream.answered if by_client[cid] == 1),
        "stored_unanswered": sum(1 for cid in stream.unanswered if by_client[cid] == 1),
        "doubled": sum(1 for n in by_client.values() if n > 1) + sum(1 for n in lines_by_tag.values() if n > 1),
        "cases": sum(cases_by_tag.values()),
        "cases_doubled": sum(1 for n in cases_by_tag.values() if n > 1),
        "telegram_notices": sum(1 for r in notices if r.state == t.OutboxState.SENT),
        "web_notices": len(web_sent),
        "in_flight_at_kill": len(in_flight),
        "repeats": repeats,
        "repeats_outside_in_flight": outside,
        "notices_lost": lost,
    }
