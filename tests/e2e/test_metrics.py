"""/metrics as Prometheus scrapes it: summed over every `griddesk serve` process, behind
METRICS_TOKEN when one is set, and with nothing personal in it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import prepare_database
from bot.settings import Settings
from handlers.cases import lifecycle
from storage import db
from storage.clock import FixedClock
from tests.chat import Chat
from tests.conftest import MONDAY_10AM, ROOT, postgres_url, reset_postgres
from tests.e2e.conftest import start

TOKEN = "scrape-me-4f1c"
PHONE = "13812345678"
NAME = "王小明"
CASE_NUMBER = re.compile(r"[A-Z]{2,4}-\d{8}-\d{4}")


def samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by (name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """One `griddesk serve` subprocess on its own port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(self.port)],
                                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 90
        while True:
            assert self.process.poll() is None, f"serve exited early, see {self.log}"
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve did not answer, see {self.log}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def shared_database(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """PostgreSQL when TEST_DATABASE_URL is set (what several processes share in production),
    else SQLite; migrated, with the example community loaded before any process starts."""
    if os.environ.get("TEST_DATABASE_URL"):
        url = postgres_url()
        reset_postgres(url)
    else:
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = Settings(database_url=url, secret_key="metrics-e2e")
    engine = db.make_engine(url)
    prepare_database(settings, engine, FixedClock(MONDAY_10AM))
    engine.dispose()
    return url


@pytest.fixture
def two_processes(shared_database: str, tmp_path: Path) -> Iterator[tuple[Serve, Serve, Path]]:
    metrics_dir = tmp_path / "metrics"
    env = {**os.environ, "DATABASE_URL": shared_database, "SECRET_KEY": "metrics-e2e", "DEMO": "true",
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": TOKEN, "TELEGRAM_POLL": "false",
           "SEND_IDLE_SECONDS": "0.05"}
    started = [Serve(env, tmp_path / "serve-a.log"), Serve(env, tmp_path / "serve-b.log")]
    try:
        for serve in started:
            serve.wait_healthy()
        yield started[0], started[1], metrics_dir
    finally:
        for serve in started:
            serve.stop()


def test_metrics_add_up_every_serve_process_and_show_nothing_personal(
        two_processes: tuple[Serve, Serve, Path]) -> None:
    a, b, metrics_dir = two_processes
    with httpx.Client(timeout=30) as resident:  # one browser; its cookie is good on both ports
        resident.post(f"{a.url}/api/demo/persona", json={"who": "building:ZN-B01"}).raise_for_status()
        said = []
        for serve, text in ((a, f"我是{NAME}，电话{PHONE}，3单元楼道的灯坏了好几天了，晚上太黑"),
                            (b, "小区门口的垃圾三天没人清运了，味道很大"),
                            (b, "你好")):
            answer = resident.post(f"{serve.url}/api/chat/send", json={"text": text})
            answer.raise_for_status()
            said.append(answer.text)
    numbers = {n for text in said for n in CASE_NUMBER.findall(text)}
    assert len(numbers) == 2, said  # two cases filed, one on each process; the greeting files none

    assert httpx.get(f"{a.url}/metrics").status_code == 401
    assert httpx.get(f"{a.url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = {}
    for serve in (a, b):
        answer = httpx.get(f"{serve.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        scraped[serve.url] = answer.text
    body = scraped[a.url]
    found = samples(body)
    # Either process answers for both: a scrape of one counts what the other did.
    assert samples(scraped[b.url]).keys() >= {k for k in found if k[0].startswith("griddesk_messages")}
    assert value(found, "griddesk_messages_total", channel="web") == 3
    assert value(found, "griddesk_intake_seconds_count") == 3
    assert value(found, "griddesk_nlu_seconds_count") >= 2
    opened = sum(v for (name, _), v in found.items() if name == "griddesk_cases_opened_total")
    assert opened == 2
    assert value(found, "griddesk_cases_opened_total", kind="service_request") == 2
    assert value(found, "griddesk_notices_dead_total", channel="web") == 0
    assert ("griddesk_outbox_pending", frozenset({("channel", "web")})) in found
    assert value(found, "griddesk_scheduler_lag_seconds") >= 0
    assert value(found, "griddesk_channel_up", channel="web") == 1

    # Nothing personal: no phone, name, text, address or case number, in any label or help text.
    for secret in (PHONE, NAME, "楼道", "垃圾", "ZN-B01", "中南小区", *numbers):
        assert secret not in body
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            assert set(sample.labels) <= {"channel", "kind", "le"}, sample

    # A process that exits takes its live gauge along; its counters stay in the sums.
    pid = a.process.pid
    assert list(metrics_dir.glob(f"gauge_livemin_{pid}.db"))
    a.stop()
    assert not list(metrics_dir.glob(f"gauge_livemin_{pid}.db"))
    after = samples(httpx.get(f"{b.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text)
    assert value(after, "griddesk_messages_total", channel="web") == 3


def test_metrics_is_open_without_a_token_and_closed_with_one(sqlite_url: str, clock: FixedClock) -> None:
    served, services = start(Settings(database_url=sqlite_url, secret_key="e2e", demo=True), clock)
    try:
        for token, expected in ((None, 200), (TOKEN, 401)):
            services.settings.metrics_token = token  # read at every scrape
            assert httpx.get(f"{served.url}/metrics").status_code == expected
            bearer = httpx.get(f"{served.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert bearer.status_code == 200 and "griddesk_outbox_pending" in bearer.text
            assert httpx.get(f"{served.url}/metrics", headers={"Authorization": TOKEN}).status_code == expected
    finally:
        served.stop()
        services.engine.dispose()


def test_placeholder_token_is_refused_in_production() -> None:
    with pytest.raises(ValueError, match="METRICS_TOKEN"):
        Settings(environment="production", secret_key="a-real-secret-value", metrics_token="changeme")


async def test_a_case_rolled_back_is_not_counted(services_for_metrics: tuple[Chat, object],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import REGISTRY

    chat, _ = services_for_metrics

    def opened() -> float:
        return REGISTRY.get_sample_value("griddesk_cases_opened_total", {"kind": "service_request"}) or 0.0

    before = opened()
    filed = await chat.resident(0).says("3单元楼道的灯坏了好几天了")
    assert CASE_NUMBER.search(filed.text)
    assert opened() == before + 1

    # The case is stored (flushed) and then the transaction fails: the resident hears of the
    # failure and the counter does not move.
    real = lifecycle.tell_card

    def failing(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)  # type: ignore[arg-type]
        raise RuntimeError("notice could not be queued")

    monkeypatch.setattr(lifecycle, "tell_card", failing)
    failed = await chat.resident(1).says("电梯又停了，老人上不了楼")
    assert not CASE_NUMBER.search(failed.text)
    assert opened() == before + 1


@pytest.fixture
def services_for_metrics(database_url: str, clock: FixedClock) -> Iterator[tuple[Chat, object]]:
    from bot.app import build_services
    from storage.state import MemoryStateStore
    from tests.fakes.classifier import KeywordClassifier

    built = build_services(Settings(database_url=database_url, secret_key="test-secret", demo=True),
                           clock=clock, classifier=KeywordClassifier(), state=MemoryStateStore())
    yield Chat(built), built
    built.engine.dispose()
