"""Drains the outbox: claim due rows, send each through its channel, mark the outcome.

- ok → sent.
- retry_after (a 429 or a local rate limit) → the recipient's pending rows wait that long; this
  is not a failure and does not count towards `max_attempts`.
- unreachable (blocked, never started, no window) → marked unreachable, visible to the front
  desk; never retried, so one blocked user cannot stall the others or start a retry storm. The
  identity is marked unreachable too, and the notice goes again to the recipient's next channel,
  or moves its case up the chain when only the web inbox is left (bot/unreachable.py), the same
  for every channel.
- any other error → retried with exponential backoff, dead after `max_attempts`.

Only the oldest pending row of each recipient is claimed, so notices arrive in order.

What /health reads: per channel, the time of the last successful send (`calls[channel]`; a
notice delivered or refused as unreachable means the platform answered; a rate limit or a hold
counts neither way) and since when sends have failed; whether the loop runs (`loop`); and the
backlog and dead notices per channel (`outbox_counts`). A round that fails (the database is
down) is retried with bounded backoff and logged once when it starts failing and once when it
works again.

Several senders (`griddesk serve` and `griddesk worker` processes) may drain one database: a
claim leases its rows (storage/outbox.claim_due) and commits before sending, so a row is in one
sender's hands at a time. A channel's own pace (messages per second, from `rates` or the channel
sender's `max_per_second`) is kept per process on top of the channel's retry_after answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping

import anyio
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from bot import metrics, unreachable
from bot.channels.base import CallRecord, ChannelSender, LoopState, Outgoing, SendResult
from handlers.watch.escalation import WatchPolicy
from storage import outbox
from storage.clock import Clock
from storage.log_context import log_context, who
from storage.tables import Outbox, OutboxState
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


def backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(2 ** attempts, 600))


class OutboxSender:
    def __init__(
        self,
        engine: Engine,
        senders: Mapping[str, ChannelSender],
        clock: Clock,
        *,
        batch: int = 50,
        max_attempts: int = 8,
        idle_seconds: float = 0.5,
        lease_seconds: float = 60.0,
        rates: Mapping[str, float] | None = None,
        policy: WatchPolicy | None = None,
    ) -> None:
        self.engine = engine
        # The escalation chain a case card climbs when it reaches its holder on no channel.
        self.policy = policy or WatchPolicy()
        self.senders = dict(senders)
        self.clock = clock
        self.batch = batch
        self.max_attempts = max_attempts
        self.idle_seconds = idle_seconds
        self.lease = dt.timedelta(seconds=lease_seconds)
        self._wake = asyncio.Event()
        self._pace: dict[str, _Pace] = {}
        self.calls = {channel: CallRecord(f"outbox → {channel}") for channel in self.senders}
        self.loop = LoopState()
        self.rounds = CallRecord("outbox sender rounds", first=idle_seconds, cap=30.0)
        for channel, sender in self.senders.items():
            rate = (rates or {}).get(channel) or getattr(sender, "max_per_second", None)
            if rate:
                self._pace[channel] = _Pace(float(rate))

    def wake(self) -> None:
        """Ask the loop to look at the outbox now (after a commit that queued notices)."""
        self._wake.set()

    def _claim(self) -> list[Outgoing]:
        with UnitOfWork(self.engine) as uow:
            rows = outbox.claim_due(
                uow.session, channels=list(self.senders), now=self.clock.now(), limit=self.batch,
                lease=self.lease,
            )
            claimed = [Outgoing(r.id or 0, r.channel, r.address, r.text, r.buttons, tuple(r.media or ()))
                       for r in rows]
            uow.commit()  # the lease must be visible to other senders before anything is sent
            return claimed

    def _mark(self, results: list[tuple[Outgoing, SendResult]]) -> None:
        with UnitOfWork(self.engine) as uow:
            now = self.clock.now()
            for message, result in results:
                row = uow.session.get(Outbox, message.id, with_for_update=False)
                if row is None or row.state != "pending":
                    continue
                if result.ok:
                    outbox.mark_sent(uow.session, row, now)
                elif result.unreachable:
                    outbox.mark_unreachable(uow.session, row, now, result.error)
                    self._after_unreachable(uow, row, now, result.error)
                elif result.retry_after is not None and not result.error:
                    until = now + dt.timedelta(seconds=result.retry_after)
                    row.next_attempt_at = until  # replaces this row's lease
                    outbox.postpone_recipient(uow.session, row.channel, row.address, until)
                else:
                    delay = (
                        dt.timedelta(seconds=result.retry_after)
                        if result.retry_after is not None
                        else backoff(row.attempts)
                    )
                    outbox.mark_retry(uow.session, row, now, delay, result.error, self.max_attempts)
                    if row.state == "dead":
                        log.warning("notice %s to %s:%s is dead: %s", row.id, row.channel,
                                    who(row.address), result.error)
            uow.commit()

    def _after_unreachable(self, uow: UnitOfWork, row: Outbox, now: dt.datetime, reason: str) -> None:
        """The identity marked unreachable; the notice queued again on the recipient's next
        channel, or its case moved up when none is left (bot/unreachable.py). In a savepoint: a
        failure there is logged and leaves the notice marked, and the rest of the batch is still
        marked (else every notice of it would be sent again once the lease runs out)."""
        unreachable.mark_identity_unreachable(uow.session, row, reason)
        # Written before the savepoint: the marks stay if it is rolled back, and SQLite's driver,
        # which opens a transaction only at the first write, has one open for it to nest in.
        uow.session.flush()
        try:
            with uow.session.begin_nested():
                done = unreachable.reach_elsewhere(uow.session, row, now, self.policy)
        except Exception:  # one notice's fall-back must not undo the batch's marks
            log.exception("notice %s to %s:%s: queueing it elsewhere failed", row.id, row.channel,
                          who(row.address))
            return
        log.info("notice %s to %s:%s is unreachable (%s): %s", row.id, row.channel, who(row.address),
                 reason, done)

    async def drain_once(self) -> int:
        """Send what is due now; returns how many rows were attempted."""
        claimed = await anyio.to_thread.run_sync(self._claim)
        if not claimed:
            return 0
        results = await asyncio.gather(*(self._send(m) for m in claimed))
        self._record(list(zip(claimed, results, strict=True)))
        await anyio.to_thread.run_sync(self._mark, list(zip(claimed, results, strict=True)))
        return len(claimed)

    async def _send(self, message: Outgoing) -> SendResult:
        sender = self.senders[message.channel]
        pace = self._pace.get(message.channel)
        if pace is not None:
            await pace.wait()
        try:
            with log_context(channel=message.channel), metrics.sending(message.channel):
                return await sender.send(message)
        except Exception as exc:  # a channel bug must not stop the others
            log.exception("sending notice %s failed", message.id)
            return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}")

    def _record(self, results: list[tuple[Outgoing, SendResult]]) -> None:
        """Each channel's record: the last answer of a round decides (they come in claim order)."""
        now = self.clock.now()
        for message, result in results:
            record = self.calls.get(message.channel)
            if record is None:
                continue
            if result.ok or result.unreachable:
                record.succeeded(now)
            elif result.retry_after is not None and not result.error:
                metrics.rate_limited(message.channel)
                continue  # a rate limit or a hold: the platform is fine, the notice waits
            else:
                record.failed(now, result.error)

    async def drain(self, max_rounds: int = 10_000) -> int:
        """Send until nothing is due now (used by the demo and tests)."""
        total = 0
        for _ in range(max_rounds):
            n = await self.drain_once()
            if n == 0:
                break
            total += n
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """The sender loop of `griddesk serve` / `griddesk worker`."""
        self.loop.started()
        try:
            while not stop.is_set():
                pause = self.idle_seconds
                try:
                    n = await self.drain_once()
                except Exception as exc:  # noqa: BLE001 (the loop must outlive a database outage)
                    pause = self.rounds.failed(self.clock.now(), f"{type(exc).__name__}: {exc}")
                    n = 0
                else:
                    if self.rounds.failures:
                        self.rounds.succeeded(self.clock.now())
                if n == 0:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=pause)
                    except TimeoutError:
                        pass
        finally:
            self.loop.ended(asked=stop.is_set())


def outbox_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """{channel: {"backlog": pending notices, "dead": dead notices}}: one grouped query."""
    states = (OutboxState.PENDING.value, OutboxState.DEAD.value)
    with UnitOfWork(engine) as uow:
        rows = uow.session.execute(
            select(col(Outbox.channel), col(Outbox.state), func.count())
            .where(col(Outbox.state).in_(states))
            .group_by(col(Outbox.channel), col(Outbox.state))
        ).all()
    counts: dict[str, dict[str, int]] = {}
    for channel, state, n in rows:
        key = "backlog" if state == OutboxState.PENDING.value else "dead"
        counts.setdefault(channel, {"backlog": 0, "dead": 0})[key] = int(n)
    return counts


class _Pace:
    """At most `per_second` sends per second on one channel in this process (wall-clock time)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
                now = self._next
            self._next = now + self.interval
