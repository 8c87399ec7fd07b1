"""Real `griddesk` processes on loopback, their own Redis, residents sending through them, and
what is counted afterwards: the machinery of the two-process fault test
(tests/fault/test_two_processes.py) and of the soak (benchmarks/soak.py).

Residents send each message with a client id and send it again, with the same id, to the other
process when an answer is lost (a refused connection, a timeout, a 5xx). Each message's text
carries its own tag (`[r003-m07]`), so a message stored twice or a case filed twice for one
message is seen whatever the client id says.

Notices: staff are on Telegram (a fake Bot API on loopback), where a repeat is visible. A row
counts as in flight in a killed sender when it was held by a lease at the kill and left
untouched by the surviving senders for the next second (so neither marked nor claimed again by
them); only those may reach their chat twice.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import select
from sqlmodel import col

from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.fakes.telegram_bot_api import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:fault-test-token"
# A killed sender's claims come due again soon, yet a live sender's round (claim, send, mark)
# on two loaded cores stays well inside it: a lease that ran out mid-round would let another
# sender repeat a notice that was never in a killed process.
LEASE_SECONDS = 10
TEXTS = ["楼道灯坏了", "电梯停了，老人下不了楼", "垃圾好几天没人清运", "下水道堵了", "小区路灯不亮"]
TAG = re.compile(r"\[r\d+-m\d+\]")
ANSWER_SECONDS = 10  # one request's timeout
GIVE_UP_SECONDS = 30  # a message still unanswered this long after its first try is given up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.TransportError, redis.exceptions.ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


def process_env(base: dict[str, str], database_url: str, redis_port: int, fake: FakeTelegram) -> dict[str, str]:
    """The environment of every `griddesk` process: the demo community, staff on the fake Bot
    API without polling, no rate limit in the way, and short leases."""
    return {
        **base, "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "ENVIRONMENT": "development", "DEMO": "true", "SECRET_KEY": "fault-test-secret",
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": fake.url, "TELEGRAM_POLL": "false",
        "TELEGRAM_PER_CHAT_PER_SECOND": "1000", "TELEGRAM_GLOBAL_PER_SECOND": "1000",
        "SEND_LEASE_SECONDS": str(LEASE_SECONDS), "SEND_IDLE_SECONDS": "0.1",
    }


class RedisServer:
    """A redis-server of our own on a free port, with no persistence: its restart also frees the
    address locks a killed process held."""

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


class Griddesk:
    """One `griddesk` command as a child process, its output in a log file per start."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.args, self.env, self.log_dir = name, list(args), env, log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with (self.log_dir / f"{self.name}-{self.starts}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-m", "bot.cli", *self.args],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class Serve(Griddesk):
    """`griddesk serve` on a fixed port (a restart comes back on the same one)."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(f"serve-{name}", ["serve", "--port", str(self.port)], env, log_dir)

    def start(self) -> None:
        super().start()
        assert self.process is not None
        try:
            wait_until(lambda: httpx.get(f"{self.url}/health", timeout=2).status_code == 200,
                       f"{self.name} did not become healthy (see {self.log_dir})", 120)
        except AssertionError:
            self.process.send_signal(signal.SIGABRT)  # its log gets every thread's stack
            self.process.wait(10)
            raise


@dataclass
class Stream:
    answered: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # client id → replies
    unanswered: list[str] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)  # a 4xx: nothing to retry
    retries: int = 0
    tags: dict[str, str] = field(default_factory=dict)  # client id → the tag in its text
    seconds: list[float] = field(default_factory=list)  # per answered message, retries included
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


def sign_in_residents(base: str, residents: int) -> list[dict[str, str]]:
    """That many new residents of the demo community, spread over its buildings; their cookies."""
    cookies = []
    with httpx.Client(base_url=base) as client:
        buildings = client.get("/api/demo/personas").json()["buildings"]
        for n in range(residents):
            answer = client.post("/api/demo/persona", json={"who": buildings[n % len(buildings)]["who"]})
            answer.raise_for_status()
            cookies.append(dict(answer.cookies))
            client.cookies.clear()
    return cookies


def resident_sends(n: int, cookies: dict[str, str], serves: tuple[Serve, Serve], stream: Stream,
                   messages: int) -> None:
    """One resident's messages, one after another; a lost answer is asked again, same id, of the
    other process. One client per resident, its connections kept alive: a new client per request
    costs ~45 ms of CPU (its TLS context), which the load generator would take from the servers."""
    with httpx.Client(cookies=cookies, timeout=ANSWER_SECONDS) as client:
        _sends(n, client, serves, stream, messages)


def _sends(n: int, client: httpx.Client, serves: tuple[Serve, Serve], stream: Stream, messages: int) -> None:
    for m in range(messages):
        tag = f"[r{n:02d}-m{m:02d}]"
        client_id = f"{uuid.uuid4()}"
        body = {"text": f"{TEXTS[(n + m) % len(TEXTS)]} {tag}", "client_id": client_id}
        with stream.lock:
            stream.tags[client_id] = tag
        target = (n + m) % 2
        started = time.monotonic()
        while True:
            serve = serves[target]
            try:
                answer = client.post(f"{serve.url}/api/chat/send", json=body)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code < 500:
                with stream.lock:
                    if answer.status_code < 300:
                        stream.answered[client_id] = answer.json()["replies"]
                        stream.seconds.append(time.monotonic() - started)
                    else:
                        stream.refused.append((client_id, answer.status_code))
                break
            if time.monotonic() - started > GIVE_UP_SECONDS:
                with stream.lock:
                    stream.unanswered.append(client_id)
                break
            with stream.lock:
                stream.retries += 1
            target = 1 - target
            time.sleep(random.uniform(0.05, 0.2))


def break_things(stream: Stream, victim: Serve, redis_server: RedisServer, engine: object,
                 out: dict[str, set[int]], kill_after_answered: int) -> None:
    """SIGKILL one process once that many messages are answered, note what its sender held,
    restart Redis, restart the process."""
    wait_until(lambda: len(stream.answered) >= kill_after_answered, "the stream did not get going", 600)
    at_kill = dt.datetime.now(dt.UTC)
    victim.kill()
    held = leased(engine, at_kill)
    time.sleep(1.0)
    # In flight in the killed sender: held at the kill and untouched a second later. The
    # survivors mark what they send within milliseconds, so what they held then has moved on.
    still = leased(engine)
    out["in_flight"] = {row_id for row_id, until in held.items() if still.get(row_id) == until}
    redis_server.stop()
    time.sleep(0.5)
    redis_server.start()
    victim.start()


def leased(engine: object, at: dt.datetime | None = None) -> dict[int, dt.datetime]:
    """Pending outbox rows held until later than `at` (a sender's lease; now by default), by id."""
    now = at or dt.datetime.now(dt.UTC)
    with UnitOfWork(engine) as uow:  # type: ignore[arg-type]
        return {r.id or 0: r.next_attempt_at for r in uow.session.scalars(
            select(t.Outbox).where(col(t.Outbox.state) == t.OutboxState.PENDING,
                                   col(t.Outbox.next_attempt_at) > now))}


def nothing_pending(engine: object) -> bool:
    with UnitOfWork(engine) as uow:  # type: ignore[arg-type]
        return uow.session.scalars(select(t.Outbox.id).where(
            col(t.Outbox.state) == t.OutboxState.PENDING)).first() is None


def tags_in(texts: Iterable[str | None], sent: set[str]) -> Counter[str]:
    """How many of the texts carry each tag that was sent."""
    return Counter(tag for text in texts for tag in set(TAG.findall(text or "")) if tag in sent)


def measure(engine: object, fake: FakeTelegram, chats: dict[int, int], stream: Stream,
            in_flight: set[int]) -> dict[str, int]:
    with UnitOfWork(engine) as uow:  # type: ignore[arg-type]
        s = uow.session
        said = list(s.scalars(select(t.ChatLine).where(col(t.ChatLine.direction) == "in")))
        case_texts = list(s.scalars(select(t.Case.text)))
        notices = list(s.scalars(select(t.Outbox).where(col(t.Outbox.channel) == "telegram")))
        web_sent = list(s.scalars(select(t.Outbox.id).where(
            col(t.Outbox.channel) == "web", col(t.Outbox.state) == t.OutboxState.SENT)))
    sent_tags = set(stream.tags.values())
    by_client = Counter(line.client_id for line in said if line.client_id)
    lines_by_tag = tags_in([line.text for line in said], sent_tags)
    cases_by_tag = tags_in(case_texts, sent_tags)

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
        "messages": len(stream.tags),
        "answered": len(stream.answered),
        "retries": stream.retries,
        "unanswered": len(stream.unanswered),
        "stored": sum(1 for cid in stream.tags if by_client[cid] == 1),
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
