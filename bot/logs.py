"""Logging for every griddesk process: `configure(settings)` once, at the command's start.

`LOG_FORMAT=text` (the default) writes one readable line per record; `LOG_FORMAT=json` writes
one JSON object per line for a log collector:

    {"time": "2026-11-23T02:00:00.123Z", "level": "INFO", "logger": "handlers.cases.lifecycle",
     "message": "case event: opened", "case": "ZN-20261123-0001", "channel": "web",
     "request_id": "6f1c…"}

`case`, `channel` and `request_id` come from storage/log_context.py (or a record's `extra`) and
appear when known; `exc` holds a traceback. uvicorn's loggers propagate to the same handler
(`griddesk serve` starts uvicorn with `log_config=None`), so access lines are formatted alike
and keep the filters put on them (bot/web/access_log.py).

What a resident writes, their phone number and address are never logged at INFO or above; the
formatters also mask anything that looks like a mainland phone number, as a safety net only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any, TextIO

from bot.settings import LogSettings
from storage import log_context

CONTEXT_KEYS = ("case", "channel", "request_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Mobile numbers (1[3-9] and nine digits, as 138 1234 5678 or 138-1234-5678 too, optionally
# +86) and landlines (area code 0xx or 0xxx, maybe in brackets, then 7-8 digits), not inside a
# longer run of digits such as an id or a timestamp.
PHONE = re.compile(r"(?<![\d])(?:(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}|\(?0\d{2,3}\)?[- ]?\d{7,8})(?![\d])")
PHONE_MASK = "[phone]"
# httpx writes every request's URL at INFO (a Telegram URL holds the bot token); alembic its
# plugin set-up at every start.
QUIET_LOGGERS = {"httpx": logging.WARNING, "httpcore": logging.WARNING,
                 "alembic.runtime.plugins": logging.WARNING}


def mask_phones(text: str) -> str:
    return PHONE.sub(PHONE_MASK, text)


def context_of(record: logging.LogRecord) -> dict[str, str]:
    """The record's case, channel and request id: its own `extra` first, else the context."""
    found = log_context.current()
    for key in CONTEXT_KEYS:
        value = getattr(record, key, None)
        if value:
            found[key] = str(value)
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_phones(record.getMessage()),
        }
        entry.update(context_of(record))
        if record.exc_info:
            entry["exc"] = mask_phones(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = mask_phones(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The readable line, with the context at its end: `… [case=ZN-… channel=web request_id=…]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = context_of(record)
        if context:
            first, newline, rest = line.partition("\n")
            tags = " ".join(f"{key}={value}" for key, value in context.items())
            line = f"{first} [{tags}]{newline}{rest}"
        return mask_phones(line)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of the write (as logging's last resort
    does), so a replaced stderr (a test's capture, a daemon's redirect) is honoured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class _Ours(StderrHandler):
    """Marks the handler configure() installed, so a second call replaces it."""


def configure(settings: LogSettings) -> logging.Handler | None:
    """Send every logger's records to stderr in the configured format, at LOG_LEVEL.

    Leaves logging alone when something else configured the root logger first (a test runner,
    an embedding program), as logging.basicConfig does; returns the handler it installed.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Ours):
            root.removeHandler(handler)
    if root.handlers:
        return None
    handler = _Ours()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, root.level))
    return handler
