"""One message per address at a time, in one process and across processes sharing Redis; no lock
kept for an address that has gone quiet; a crashed holder does not silence an address."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.app import Services
from bot.channels.base import Attachment, Incoming
from bot.pipeline import Pipeline
from storage import tables as t
from storage.clock import Clock
from storage.state import LocalLocks, LockTimeout, RedisStateStore, StateStore
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat
from tests.fakes.classifier import KeywordClassifier


def _never_two_at_once(lock_of: Callable[[], object], workers: int = 8) -> int:
    inside, overlaps = [0], [0]

    def serve() -> None:
        with lock_of():  # type: ignore[attr-defined]
            inside[0] += 1
            overlaps[0] = max(overlaps[0], inside[0])
            time.sleep(0.01)
            inside[0] -= 1

    threads = [threading.Thread(target=serve) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return overlaps[0]


def test_one_address_is_served_one_message_at_a_time() -> None:
    locks = LocalLocks()
    assert _never_two_at_once(lambda: locks.hold("web:resident:7")) == 1


def test_two_addresses_do_not_wait_for_each_other() -> None:
    locks = LocalLocks()
    with locks.hold("web:a"):
        assert locks.get("web:b").acquire(blocking=False)


def test_a_quiet_address_keeps_no_lock() -> None:
    locks = LocalLocks()
    for n in range(1_000):
        with locks.hold(f"telegram:{n}"):
            pass
    gc.collect()
    assert len(locks) == 0
    held = locks.get("telegram:1")
    assert locks.get("telegram:1") is held
    assert len(locks) == 1


def test_a_lock_held_too_long_is_a_clear_error() -> None:
    locks = LocalLocks()
    with locks.hold("web:resident:7"), pytest.raises(LockTimeout), locks.hold("web:resident:7", wait=0.05):
        pass


@pytest.fixture
def two_processes(redis_url: str, redis_prefix: str) -> Iterator[tuple[RedisStateStore, RedisStateStore]]:
    """Two stores on one Redis, as two processes have: each its own connections and local locks."""
    first = RedisStateStore(redis_url, prefix=redis_prefix, lease=1.0, wait=5.0)
    second = RedisStateStore(redis_url, prefix=redis_prefix, lease=1.0, wait=5.0)
    yield first, second
    first.close()
    second.close()


def test_processes_sharing_redis_serve_an_address_one_message_at_a_time(
        two_processes: tuple[RedisStateStore, RedisStateStore]) -> None:
    first, second = two_processes
    turn = [0]

    def either() -> object:
        turn[0] += 1
        return (first if turn[0] % 2 else second).lock("wechat:o-resident")

    assert _never_two_at_once(either) == 1
    with first.lock("wechat:o-resident"), second.lock("wechat:o-neighbour"):
        pass  # another address is free meanwhile


def test_a_process_that_died_holding_the_lock_frees_it_when_the_lease_ends(
        two_processes: tuple[RedisStateStore, RedisStateStore]) -> None:
    first, second = two_processes
    held = first.lock("telegram:42")
    held.__enter__()  # and never left: the process is gone
    started = time.monotonic()
    with second.lock("telegram:42"):
        waited = time.monotonic() - started
    assert 0.5 < waited < 4.0


def _pipeline(engine: Engine, state: StateStore, clock: Clock) -> Pipeline:
    return Pipeline(engine, state=state, classifier=KeywordClassifier(), clock=clock)


def test_a_description_sent_to_another_process_waits_for_the_photo_being_kept(
        services: Services, chat: Chat, two_processes: tuple[RedisStateStore, RedisStateStore]) -> None:
    """A photo is still downloading in one process when its description reaches another: the
    description is read after the photo is kept, so the case carries the photo."""
    first, second = two_processes
    engine, clock, resident = services.engine, services.clock, chat.resident(0).address
    photo_in_hand = threading.Event()

    def slow_download(incoming: Incoming) -> Incoming:
        photo_in_hand.set()
        time.sleep(0.5)
        kept = Attachment(kind="photo", ref="media:kept-before-the-text")
        return Incoming(channel=incoming.channel, address=incoming.address, text=incoming.text,
                        attachments=(kept,))

    photo = Incoming(channel="web", address=resident, text="",
                     attachments=(Attachment(kind="photo", ref="platform-ref"),))
    text = Incoming(channel="web", address=resident, text="楼道灯坏了三天了")
    sending = threading.Thread(target=_pipeline(engine, first, clock).handle_sync,
                               kwargs={"incoming": photo, "prepare": slow_download})
    sending.start()
    assert photo_in_hand.wait(5)
    _pipeline(engine, second, clock).handle_sync(text)
    sending.join()
    with UnitOfWork(engine) as uow:
        refs = list(uow.session.scalars(select(t.Attachment.ref)))
        assert uow.session.scalar(select(func.count()).select_from(t.Case)) == 1
    assert refs == ["media:kept-before-the-text"]
