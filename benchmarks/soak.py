"""Soak with faults: residents' web chat messages through two `serve` processes and a `worker`
on PostgreSQL and Redis while one `serve` is killed with SIGKILL and restarted, and Redis is
restarted.

    uv run python benchmarks/soak.py                           # 200 residents × 25 messages = 5,000
    uv run python benchmarks/soak.py --residents 20 --messages 5 --concurrency 8

Everything is on loopback and this run's own: a redis-server on a free port (no persistence, so
its restart also frees the address locks the killed process held), the two `griddesk serve`
processes and one `griddesk worker` sharing a metrics directory (PROMETHEUS_MULTIPROC_DIR), and
staff on a fake Telegram Bot API in this process, which takes a little time over every
sendMessage so notices are in flight at the kill, and where a repeated notice is seen. The
database of --database-url is dropped and created for the run.

Residents send their messages one after another, with a client id, each to one process and,
when the answer is lost (a refused connection, a timeout, a 5xx), again with the same id to the
other (tests/fault/processes.py, shared with the fault test tests/fault/test_two_processes.py).
Once --kill-at of the messages are answered, the first `serve` is killed; a second later Redis
is restarted, then the killed process. When every resident is done and the outbox has drained,
the run prints what residents got, what the database holds, what staff received, and the view
of /metrics. It exits non-zero when an answered message was lost, a message was stored twice, a
case filed twice, a notice marked sent never arrived, or a notice was repeated that was not in
flight in the killed sender.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import db
from storage.db import recreate_database
from tests.fakes.telegram_bot_api import FakeTelegram
from tests.fault.processes import (
    TOKEN,
    Disposing,
    Griddesk,
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

DRAIN_SECONDS = 600  # the outbox must be empty this long after the last answer
METRICS = ("griddesk_messages_total", "griddesk_cases_opened_total", "griddesk_intake_seconds",
           "griddesk_outbox_pending", "griddesk_notices_dead_total", "griddesk_rate_limited_total",
           "griddesk_channel_up", "griddesk_scheduler_lag_seconds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=200)
    parser.add_argument("--messages", type=int, default=25, help="messages per resident")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/gd_soak",
                        help="PostgreSQL; its database is dropped and created for the run")
    parser.add_argument("--kill-at", type=float, default=1 / 3,
                        help="the share of messages answered when one serve is killed")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument("--send-delay", type=float, default=0.05,
                        help="seconds the fake Bot API takes over every sendMessage")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed: the soak starts and restarts its own Redis")

    total = args.residents * args.messages
    url = make_url(args.database_url)
    if url.database is None:
        sys.exit("--database-url names no database")
    recreate_database(url.set(database="postgres").render_as_string(hide_password=False), url.database)
    database_url = url.render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="griddesk-soak-"))
    (work / "metrics").mkdir()

    redis_server = RedisServer(free_port(), work / "redis.log")
    fake = FakeTelegram([TOKEN]).start()
    env = {**process_env(dict(os.environ), database_url, redis_server.port, fake),
           "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")}
    one, two = Serve("one", env, work), Serve("two", env, work)
    worker = Griddesk("worker", ["worker"], env, work)
    engine = db.make_engine(database_url)
    print(f"soak: {args.residents} residents × {args.messages} messages = {total:,}; 2 serve + 1 worker "
          f"on PostgreSQL ({url.database}) and Redis; {args.concurrency} clients; logs in {work}")
    with cleanup(fake, redis_server, one, two, worker, Disposing(engine)):
        fake.fail_next(None, method="sendMessage", delay=args.send_delay)
        redis_server.start()
        one.start()  # loads the example community into the empty database
        chats = bind_staff_to_telegram(engine, fake)
        worker.start()
        two.start()
        cookies = sign_in_residents(one.url, args.residents)

        stream = Stream()
        killed: dict[str, set[int]] = {}
        moments: dict[str, float] = {}
        started = time.monotonic()

        def chaos() -> None:
            kill_after = max(1, math.ceil(total * args.kill_at))
            wait_until(lambda: len(stream.answered) >= kill_after, "the stream did not get going", 600)
            moments["kill"], moments["answered"] = time.monotonic() - started, len(stream.answered)
            break_things(stream, one, redis_server, engine, killed, kill_after)
            moments["back"] = time.monotonic() - started

        breaker = threading.Thread(target=chaos)
        breaker.start()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(lambda n: resident_sends(n, cookies[n], (one, two), stream, args.messages),
                          range(args.residents)))
        elapsed = time.monotonic() - started
        wait_until(lambda: nothing_pending(engine), "the outbox did not drain", DRAIN_SECONDS)
        drained = time.monotonic() - started - elapsed
        breaker.join()

        figures = measure(engine, fake, chats, stream, killed.get("in_flight", set()))
        scraped = httpx.get(f"{two.url}/metrics", timeout=30)
        scraped.raise_for_status()
        worker_alive = worker.running()

    failures = report(figures, stream, elapsed, drained, moments, worker_alive)
    print("\nmetrics (/metrics of serve two, summed over the three processes):")
    for line in metrics_view(scraped.text):
        print(f"  {line}")
    if failures:
        print(f"\nFAILED: {'; '.join(failures)} (logs kept in {work})")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


def report(f: dict[str, int], stream: Stream, elapsed: float, drained: float,
           moments: dict[str, float], worker_alive: bool) -> list[str]:
    """Print the run's figures; what must not happen and did."""
    lost = f["answered"] - f["stored_answered"]
    p50, p99 = percentiles(stream.seconds)
    if "kill" in moments:
        print(f"killed serve one (SIGKILL) at {moments['kill']:.1f} s with {moments['answered']:,.0f} "
              f"answered; Redis restarted; serve one back {moments['back'] - moments['kill']:.1f} s later")
    rows = [
        ("messages", f"{f['messages']:,}", ""),
        ("answered 2xx", f"{f['answered']:,}", ""),
        ("stored", f"{f['stored']:,}", "one chat line per client id"),
        ("lost", f"{lost:,}", "answered, not stored: must be 0"),
        ("unanswered", f"{f['unanswered']:,}", f"stored anyway: {f['stored_unanswered']:,}"),
        ("refused 4xx", f"{len(stream.refused):,}", ""),
        ("retries", f"{f['retries']:,}", "to the other process, same client id"),
        ("doubled", f"{f['doubled']:,}", "a message stored twice: must be 0"),
        ("cases filed", f"{f['cases']:,}", ""),
        ("cases filed twice", f"{f['cases_doubled']:,}", "must be 0"),
        ("notices sent", f"{f['telegram_notices']:,} Telegram, {f['web_notices']:,} web", ""),
        ("notices repeated", f"{f['repeats']:,}",
         (f"in flight at the kill: {f['in_flight_at_kill']:,}, "
          f"outside those: {f['repeats_outside_in_flight']:,}")),
        ("notices lost", f"{f['notices_lost']:,}", "marked sent, never received: must be 0"),
        ("elapsed", f"{elapsed:.1f} s", f"then {drained:.1f} s until the outbox was empty"),
        ("messages/s", f"{f['answered'] / elapsed:.1f}", "answered per second of the stream"),
        ("round trip", f"p50 {p50:.3f} s, p99 {p99:.3f} s", "per answered message, retries included"),
        ("worker", "running" if worker_alive else "EXITED", ""),
    ]
    for name, value, note in rows:
        print(f"  {name:<18} {value:<26} {note}".rstrip())
    failures = []
    if lost:
        failures.append(f"{lost} answered messages lost")
    if f["doubled"]:
        failures.append(f"{f['doubled']} messages stored twice")
    if f["cases_doubled"]:
        failures.append(f"{f['cases_doubled']} messages filed two cases")
    if f["notices_lost"]:
        failures.append(f"{f['notices_lost']} notices marked sent never arrived")
    if f["repeats"] > f["in_flight_at_kill"] or f["repeats_outside_in_flight"]:
        failures.append("notices repeated beyond those in flight at the kill")
    if not worker_alive:
        failures.append("the worker exited")
    if "back" not in moments:
        failures.append("the kill and restarts did not happen (see the output above)")
    return failures


def percentiles(seconds: list[float]) -> tuple[float, float]:
    if len(seconds) < 2:
        return (seconds[0], seconds[0]) if seconds else (math.nan, math.nan)
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return cuts[49], cuts[98]


def metrics_view(text: str) -> list[str]:
    """The soak's metrics, one line per series; a histogram as its count and the p50/p99
    estimated from its buckets (linear within a bucket, as Prometheus' histogram_quantile)."""
    # The parser names a counter's family without its _total.
    lines: dict[str, list[str]] = {name.removesuffix("_total"): [] for name in METRICS}
    for family in text_string_to_metric_families(text):
        if family.name not in lines:
            continue
        if family.type == "histogram":
            buckets = [(float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")]
            count = next(s.value for s in family.samples if s.name.endswith("_count"))
            lines[family.name].append(
                f"{family.name} count {count:,.0f}, p50 ≈ {bucket_quantile(0.5, buckets):.3f} s, "
                f"p99 ≈ {bucket_quantile(0.99, buckets):.3f} s")
            continue
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                lines[family.name].append(f"{series(sample)} {sample.value:,.6g}")
    return [line for name, found in zip(METRICS, lines.values(), strict=True)
            for line in found or [f"{name}: none counted"]]


def series(sample: Sample) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}}" if labels else sample.name


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The q-quantile of a histogram from its cumulative buckets (upper bound, count)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # beyond the largest finite bound: say that bound
            return lower + (upper - lower) * (rank - below) / (count - below) if count > below else upper
        lower, below = upper, count
    return lower


if __name__ == "__main__":
    sys.exit(main())
