"""Channel-neutral values at the boundary between a platform and the pipeline, and the record of
how a channel's loops are doing (for /health)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from handlers.conversation import Attachment, Button, Reply

__all__ = ["Attachment", "Button", "CallRecord", "ChannelSender", "Incoming", "LoopState", "Outgoing",
           "Reply", "SendResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """One thing a person did on a channel: wrote text, pressed a button, sent a photo."""

    channel: str
    address: str
    text: str = ""
    action: str | None = None
    attachments: tuple[Attachment, ...] = ()
    language_hint: str | None = None
    display_name: str = ""


@dataclass(frozen=True)
class Outgoing:
    """A queued notice as the sender hands it to a channel.

    media: ids of kept photos (storage.media) to send before the text, on a channel that can
    (Telegram); WeChat sends a link to a page of them instead.
    """

    id: int
    channel: str
    address: str
    text: str
    buttons: list[list[dict[str, str]]] = field(default_factory=list)
    media: tuple[int, ...] = ()


@dataclass(frozen=True)
class SendResult:
    """What a channel made of one send.

    ok: delivered. retry_after: try again after that many seconds (rate limit, 5xx).
    unreachable: the recipient cannot be reached here (blocked, never started, no window).
    """

    ok: bool
    retry_after: float | None = None
    unreachable: bool = False
    error: str = ""


class ChannelSender(Protocol):
    channel: str

    async def send(self, message: Outgoing) -> SendResult: ...


# --------------------------------------------------------------------------- liveness


class CallRecord:
    """How one loop's calls to a platform are going: when one last succeeded, and since when
    they have failed without a success in between. /health reads it; the loop logs through it.

    Only changes of state are logged (failing → WARNING once, working again → WARNING once), so
    a platform that stays down for an hour leaves two lines, not thousands. `backoff` is the
    wait before the next try after `failures` failures in a row: `first`, doubled each time,
    never over `cap`.
    """

    def __init__(self, what: str, *, first: float = 1.0, cap: float = 30.0) -> None:
        self.what = what
        self.first = first
        self.cap = cap
        self.last_ok_at: dt.datetime | None = None
        self.failing_since: dt.datetime | None = None
        self.last_failure_at: dt.datetime | None = None
        self.failures = 0

    def succeeded(self, now: dt.datetime) -> None:
        if self.failures:
            log.warning("%s: working again after %d failed call(s)", self.what, self.failures)
        self.last_ok_at = now
        self.failing_since = None
        self.failures = 0

    def failed(self, now: dt.datetime, error: str) -> float:
        """Record a failure; returns how long to wait before trying again (seconds)."""
        if not self.failures:
            log.warning("%s: failing (%s); retrying with backoff up to %.0f s, logged again once "
                        "it works", self.what, error[:300], self.cap)
            self.failing_since = now
        else:
            log.debug("%s: failed again (%d in a row): %s", self.what, self.failures + 1, error[:300])
        self.failures += 1
        self.last_failure_at = now
        return self.backoff()

    def backoff(self) -> float:
        return min(self.first * 2 ** max(self.failures - 1, 0), self.cap)

    def down(self, now: dt.datetime, after: dt.timedelta) -> bool:
        """Every call for at least `after` has failed, and one failed within the last `after`."""
        return (self.failing_since is not None and self.last_failure_at is not None
                and self.failing_since <= now - after and self.last_failure_at >= now - after)

    def report(self) -> dict[str, Any]:
        return {"last_ok_at": _iso(self.last_ok_at), "failing_since": _iso(self.failing_since)}


class LoopState:
    """Whether a background loop runs: idle (never started), running, stopped (it was asked to
    stop), or died (it ended without being asked: a bug, since every loop outlives failures)."""

    def __init__(self) -> None:
        self.state = "idle"

    def started(self) -> None:
        self.state = "running"

    def ended(self, *, asked: bool) -> None:
        self.state = "stopped" if asked else "died"

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def died(self) -> bool:
        return self.state == "died"


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
