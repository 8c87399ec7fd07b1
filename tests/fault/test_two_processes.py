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
persistence, so its restart also frees the address locks the killed process held. The machinery
lives in tests/fault/processes.py, shared with the soak (benchmarks/soak.py).
"""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from storage import db
from tests.conftest import reset_postgres
from tests.fakes.telegram_bot_api import FakeTelegram
from tests.fault.processes import (
    TOKEN,
    Disposing,
    RedisServer,
    Serve,
    Stream,
    bind_staff_to_telegram,
    break_things,
    cleanup,
    free_port,
    measure,
    nothing_pending,
    process_env,
    resident_sends,
    sign_in_residents,
    wait_until,
)

RESIDENTS = 12
MESSAGES_EACH = 8
KILL_AFTER_ANSWERED = 30  # the kill lands in the first third of the stream
# The fake Bot API takes this long over every sendMessage, so the killed sender has notices in
# flight and the bound on repeats is exercised, not met by 0 ≤ 0.
SEND_SECONDS = 0.1

pytestmark = pytest.mark.slow


def test_two_serve_processes_survive_a_kill_and_a_redis_restart(tmp_path: Path) -> None:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set: the two-process fault test needs PostgreSQL")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the fault test starts and restarts its own Redis")
    reset_postgres(url)

    redis_server = RedisServer(free_port(), tmp_path / "redis.log")
    fake = FakeTelegram([TOKEN]).start()
    env = process_env(dict(os.environ), url, redis_server.port, fake)
    one, two = Serve("one", env, tmp_path), Serve("two", env, tmp_path)
    engine = db.make_engine(url)
    with cleanup(fake, redis_server, one, two, Disposing(engine)):
        fake.fail_next(None, method="sendMessage", delay=SEND_SECONDS)
        redis_server.start()
        one.start()  # loads the example community into the empty database
        chats = bind_staff_to_telegram(engine, fake)
        two.start()
        cookies = sign_in_residents(one.url, RESIDENTS)

        stream = Stream()
        killed: dict[str, set[int]] = {}
        chaos = threading.Thread(target=break_things,
                                 args=(stream, one, redis_server, engine, killed, KILL_AFTER_ANSWERED))
        chaos.start()
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda n: resident_sends(n, cookies[n], (one, two), stream, MESSAGES_EACH),
                          range(RESIDENTS)))
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
