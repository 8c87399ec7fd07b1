"""The background worker: the deadline watch's scheduler loop and the outbox sender.

The scheduler also deletes, once an hour, what is kept no longer: photos no case refers to and
web chat lines past CHAT_HISTORY_DAYS (storage/retention.py).

`griddesk serve` runs both in its lifespan (Services.background and Services.sender);
`griddesk worker` runs them without the web app. Any number of either may run against one
database: due work is claimed row by row (storage/scheduler.py), notices are leased
(storage/outbox.py).

    scheduler = Scheduler(engine, clock, policy_from(settings), tick_seconds=30)
    report = scheduler.tick()          # one pass, e.g. from a test or `griddesk worker --once`
    await scheduler.run(stop)          # the loop, until `stop` is set
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

import anyio
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from bot.settings import Settings
from handlers.watch import escalation
from handlers.watch.escalation import TickReport, WatchPolicy
from nlu.parse import Parse
from storage import retention
from storage.clock import Clock
from storage.tables import DueAction, DueActionState
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
# How often a scheduler deletes what is kept no longer (storage/retention.py).
PURGE_EVERY = dt.timedelta(hours=1)


def policy_from(settings: Settings) -> WatchPolicy:
    return WatchPolicy(
        reminder_lead=settings.watch_reminder_lead,
        follow_up_hours=settings.watch_follow_up_hours,
        close_unrated_hours=settings.watch_close_unrated_hours,
        digest_time=settings.watch_digest_time,
        chain=tuple(settings.watch_chain.split(",")),
        urgent_chain=tuple(settings.watch_urgent_chain.split(",")),
    )


class Scheduler:
    """Drives the deadline watch: plan from case events, perform what is due, send digests.

    Each pass reads the case events written since the stored cursor, including those written while
    no scheduler ran; a restart re-plans every watched case only when the policy, a working
    calendar, the holiday data or the planner changed, in chunks between due work
    (handlers/watch/escalation.py).
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        policy: WatchPolicy,
        *,
        tick_seconds: float = 30.0,
        batch: int = 500,
        on_queued: Callable[[], None] | None = None,
        chat_history_days: int = 365,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.policy = policy
        self.tick_seconds = tick_seconds
        self.batch = batch
        self.on_queued = on_queued
        self.chat_history_days = chat_history_days
        self._purged_at: dt.datetime | None = None

    def tick(self, now: dt.datetime | None = None) -> TickReport:
        now = now or self.clock.now()
        report = escalation.tick(self.engine, now, self.policy, batch=self.batch)
        if self._purged_at is None or now - self._purged_at >= PURGE_EVERY:
            self._purge(now)
        if report.queued_notices and self.on_queued is not None:
            self.on_queued()
        if report.done or report.digests or report.failed:
            log.info("deadline watch: %s done, %s skipped, %s digests, %s failed", report.done,
                     report.skipped, report.digests, report.failed)
        return report

    def _purge(self, now: dt.datetime) -> None:
        """Orphan media and old web chat lines (storage/retention.py), once an hour."""
        with UnitOfWork(self.engine) as uow:
            purged = retention.purge(uow.session, now, chat_days=self.chat_history_days)
            uow.commit()
        self._purged_at = now
        if purged.media or purged.chat_lines:
            log.info("retention: %s orphan media and %s web chat lines deleted", purged.media,
                     purged.chat_lines)

    async def run(self, stop: asyncio.Event) -> None:
        """The scheduler loop; a failing pass is logged and the next one tries again."""
        while not stop.is_set():
            try:
                await anyio.to_thread.run_sync(self.tick)
            except Exception:
                log.exception("deadline watch pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.tick_seconds)


def scheduler_lag(engine: Engine, now: dt.datetime) -> float:
    """Seconds since the oldest pending due action fell due (0 when nothing is due): how far the
    deadline watch is behind, whichever process runs it (/metrics). One indexed query."""
    with UnitOfWork(engine) as uow:
        oldest = uow.session.scalar(
            select(func.min(col(DueAction.due_at))).where(
                col(DueAction.state) == DueActionState.PENDING.value, col(DueAction.due_at) <= now))
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0


class NoClassifier:
    """The worker reads no messages, so it loads no NLU model."""

    def parse(self, text: str) -> Parse:
        raise RuntimeError("the worker does not read messages")


def scheduler_of(background: list[Callable[[asyncio.Event], object]]) -> Scheduler:
    """The Scheduler whose loop is among a Services' background jobs."""
    for job in background:
        owner = getattr(job, "__self__", None)
        if isinstance(owner, Scheduler):
            return owner
    raise LookupError("no deadline watch among the background jobs")


async def run_all(jobs: list[Callable[[asyncio.Event], object]], stop: asyncio.Event) -> None:
    """Run background loops until `stop` is set."""
    tasks = [asyncio.ensure_future(job(stop)) for job in jobs]  # type: ignore[call-overload]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
