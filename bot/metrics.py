"""What /metrics counts, declared once: Prometheus metrics through `prometheus-client`.

Every `griddesk serve` and `griddesk worker` process counts into files of one directory
(prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR) and /metrics, answered by any
of them, adds up all of them. When the variable is not set, serve and worker use
`var/metrics/<deployment>/` (the deployment: a digest of DATABASE_URL, since the processes of one
deployment share the database). prometheus-client picks its storage when it is first imported,
so the directory is settled (`use_multiprocess_dir`) before any metric is touched: this module
imports prometheus-client only on first use.

Counted by each process where it happens:

- griddesk_messages_total{channel}, griddesk_intake_seconds, griddesk_nlu_seconds (bot/pipeline.py)
- griddesk_cases_opened_total{kind}: cases whose transaction committed (bot/pipeline.py)
- griddesk_send_seconds{channel}, griddesk_rate_limited_total{channel} (bot/sender.py)
- griddesk_channel_up{channel}: 1 unless the channel is down by /health's rule in some living
  process (the lowest value of the living processes; a process that exits takes its value along)

Read from the database at scrape time (bot/web/metrics.py), because they are facts of the shared
database rather than of a process: griddesk_outbox_pending{channel},
griddesk_notices_dead_total{channel} (dead notices stay dead, so the count only grows) and
griddesk_scheduler_lag_seconds (how long the oldest due action of the deadline watch is overdue).

No label carries anything personal: channel names and case kinds only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from handlers.cases import lifecycle

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

    from handlers.desk import Classifier
    from nlu.parse import Parse

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR = Path("var") / "metrics"
# How often each process refreshes its griddesk_channel_up (the scraping process also does so
# at every scrape).
CHANNEL_REFRESH_SECONDS = 15.0
# A live gauge's file: prometheus-client names it gauge_<mode>_<pid>.db.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db$")


@dataclass(frozen=True)
class Instruments:
    messages: Counter
    cases_opened: Counter
    intake_seconds: Histogram
    nlu_seconds: Histogram
    send_seconds: Histogram
    rate_limited: Counter
    channel_up: Gauge


@functools.cache
def instruments() -> Instruments:
    """The metrics of this process, made on first use (after `use_multiprocess_dir`)."""
    from prometheus_client import Counter, Gauge, Histogram

    return Instruments(
        messages=Counter("griddesk_messages", "Messages read, by channel.", ["channel"]),
        cases_opened=Counter("griddesk_cases_opened", "Cases opened (committed), by kind.", ["kind"]),
        intake_seconds=Histogram(
            "griddesk_intake_seconds", "Time to serve one message: the address's lock, NLU, the "
            "handlers and the commit.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)),
        nlu_seconds=Histogram(
            "griddesk_nlu_seconds", "Time of one NLU parse.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)),
        send_seconds=Histogram(
            "griddesk_send_seconds", "Time of one notice's send to its channel, by channel.", ["channel"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)),
        rate_limited=Counter(
            "griddesk_rate_limited", "Sends answered 'retry after' (a platform's 429, a local rate "
            "limit, or WeChat's messaging window used up), by channel.", ["channel"]),
        channel_up=Gauge(
            "griddesk_channel_up", "1 when the channel is up by /health's rule in every living "
            "process, 0 when it is down in one.", ["channel"], multiprocess_mode="livemin"),
    )


# --------------------------------------------------------------------------- multiprocess files


def deployment_dir(database_url: str) -> Path:
    """The default directory of one deployment's metric files: var/metrics/<digest of the URL>."""
    return METRICS_DIR / hashlib.sha256(database_url.encode()).hexdigest()[:12]


def use_multiprocess_dir(database_url: str) -> Path:
    """Settle the multiprocess directory before prometheus-client is first imported (serve, worker).

    PROMETHEUS_MULTIPROC_DIR wins when set; else the deployment's directory under var/. The
    per-process files of processes that are gone (a crash skips `process_exiting`) are cleaned
    of their live gauges; their counters and histograms are kept, so totals never go back.
    """
    chosen = os.environ.get(MULTIPROC_ENV)
    path = Path(chosen) if chosen else deployment_dir(database_url)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    from prometheus_client import multiprocess

    for name in glob.glob(str(path / "gauge_live*_*.db")):
        found = _LIVE_GAUGE_FILE.search(name)
        if found and not _alive(int(found.group(1))):
            multiprocess.mark_process_dead(int(found.group(1)), str(path))
    return path


def process_exiting() -> None:
    """Take this process's live gauges out of the sums (its counters stay)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(os.getpid(), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process: alive
    return True


# --------------------------------------------------------------------------- call sites


@contextlib.contextmanager
def intake(channel: str) -> Iterator[None]:
    """Count one message and time it."""
    m = instruments()
    m.messages.labels(channel=channel).inc()
    started = time.perf_counter()
    try:
        yield
    finally:
        m.intake_seconds.observe(time.perf_counter() - started)


class TimedClassifier:
    """The classifier, with each parse timed into griddesk_nlu_seconds."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def parse(self, text: str) -> Parse:
        started = time.perf_counter()
        try:
            return self.classifier.parse(text)
        finally:
            instruments().nlu_seconds.observe(time.perf_counter() - started)


class CasesOpened:
    """The cases a message's transaction opened, counted once it has committed.

    `note(session)`, just before the commit, takes their kinds from the transaction
    (handlers.cases.lifecycle.opened_in: a rolled-back savepoint or transaction has forgotten
    its own); `count()`, after the commit, counts them.
    """

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def note(self, session: Session) -> None:
        self.kinds = lifecycle.opened_in(session)

    def count(self) -> None:
        counter = instruments().cases_opened
        for kind in self.kinds:
            counter.labels(kind=kind).inc()
        self.kinds = []


@contextlib.contextmanager
def sending(channel: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        instruments().send_seconds.labels(channel=channel).observe(time.perf_counter() - started)


def rate_limited(channel: str) -> None:
    instruments().rate_limited.labels(channel=channel).inc()


# --------------------------------------------------------------------------- channel state


def refresh_channels(services: Any) -> None:
    """Set this process's griddesk_channel_up from /health's rule (bot/web/health.py)."""
    from bot.web.health import channels

    gauge = instruments().channel_up
    for name, report in channels(services, None).items():
        gauge.labels(channel=name).set(0 if report["down"] else 1)


class ChannelWatch:
    """A background loop of serve and worker: keeps this process's channel state current."""

    def __init__(self, services: Any, every: float = CHANNEL_REFRESH_SECONDS) -> None:
        self.services = services
        self.every = every

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    refresh_channels(self.services)
                except Exception:  # a metric must never stop the process
                    log.exception("channel state for /metrics failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.every)
        finally:
            # The process is stopping: uvicorn re-raises SIGTERM once the app has shut down, so
            # this, and not code after uvicorn.run, is the last moment to leave the sums.
            process_exiting()
