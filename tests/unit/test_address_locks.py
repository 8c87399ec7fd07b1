"""One message per address at a time, and no lock kept for an address that has gone quiet."""

from __future__ import annotations

import gc
import threading
import time

from bot.pipeline import AddressLocks


def test_one_address_is_served_one_message_at_a_time() -> None:
    locks = AddressLocks()
    inside, overlaps = [0], [0]

    def serve() -> None:
        with locks.get("web:resident:7"):
            inside[0] += 1
            overlaps[0] = max(overlaps[0], inside[0])
            time.sleep(0.01)
            inside[0] -= 1

    threads = [threading.Thread(target=serve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps[0] == 1


def test_two_addresses_do_not_wait_for_each_other() -> None:
    locks = AddressLocks()
    with locks.get("web:a"):
        assert locks.get("web:b").acquire(blocking=False)


def test_a_quiet_address_keeps_no_lock() -> None:
    locks = AddressLocks()
    for n in range(1_000):
        with locks.get(f"telegram:{n}"):
            pass
    gc.collect()
    assert len(locks) == 0
    held = locks.get("telegram:1")
    assert locks.get("telegram:1") is held
    assert len(locks) == 1
