"""What a log line is about: the request, the channel and the case being handled.

The web app sets the request id per request (bot/web/request_id.py), the pipeline the channel
per message, and the case desk the case number once it is known; bot/logs.py adds them to every
line written meanwhile. It lives in storage/ so that handlers/ may use it too.

    with log_context(channel="telegram"):
        ...                      # every line logged here carries channel=telegram
        note_case("ZN-20261121-0007")   # and from now on, inside the block, case=ZN-…
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
CHANNEL: ContextVar[str | None] = ContextVar("channel", default=None)
CASE: ContextVar[str | None] = ContextVar("case", default=None)
# note_case() only sets the case inside a log_context() block, which undoes it at the end: a
# long-running loop (the deadline watch) never carries one case's number into the next line.
_scoped: ContextVar[bool] = ContextVar("log_scoped", default=False)


@contextmanager
def log_context(*, case: str | None = None, channel: str | None = None,
                request_id: str | None = None) -> Iterator[None]:
    """Lines logged inside the block carry the given values (the others stay as they were)."""
    given = {"case": case, "channel": channel, "request_id": request_id}
    variables = {"case": CASE, "channel": CHANNEL, "request_id": REQUEST_ID}
    tokens = [(var, var.set(given[name] if given[name] is not None else var.get()))
              for name, var in variables.items()]
    scoped = _scoped.set(True)
    try:
        yield
    finally:
        _scoped.reset(scoped)
        for var, token in reversed(tokens):
            var.reset(token)


def note_case(number: str) -> None:
    """The case being handled is now known: later lines of the same block carry its number."""
    if _scoped.get():
        CASE.set(number)


def current() -> dict[str, str]:
    """The context of the line being logged now: only what is known."""
    values = {"case": CASE.get(), "channel": CHANNEL.get(), "request_id": REQUEST_ID.get()}
    return {name: value for name, value in values.items() if value}


def who(address: str) -> str:
    """A channel address (a Telegram chat id, a WeChat openid, `resident:42`) as logs show it:
    a short digest that tells one person's lines apart without naming them."""
    return "u" + hashlib.sha256(address.encode("utf-8")).hexdigest()[:10]

