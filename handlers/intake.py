"""One message in, replies out: the entry every channel calls.

    replies = intake.handle(desk, actor, text="楼道灯坏了三天")
    replies = intake.handle(desk, actor, action="ack:42")

Order of precedence: a button action; an answer to a pending prompt; a command; for a resident
not yet bound to a building, the binding dialogue; else the free-text handler (the NLU path for
residents, the help text for staff). Every GriddeskError becomes a clear reply and changes
nothing: the caller commits only when `handle` returns normally.
"""

from __future__ import annotations

import logging
import unicodedata

from handlers import (
    chat_cases,  # noqa: F401  (registers the case commands and actions)
    chat_council,  # noqa: F401
    chat_watch,  # noqa: F401  (registers /overdue, /dead, /digest)
    dispatch,
)
from handlers.conversation import Actor, Reply
from handlers.desk import Desk
from handlers.errors import BadInput, GriddeskError
from handlers.replies import say

log = logging.getLogger(__name__)


def clean_text(text: str, max_chars: int) -> str:
    """The text to work on; BadInput for empty, oversized or binary input."""
    if len(text) > max_chars:
        raise BadInput("too long", reason="too_long", limit=max_chars)
    cleaned = unicodedata.normalize("NFC", text).strip() if text else ""
    controls = sum(1 for ch in cleaned if unicodedata.category(ch) in ("Cc", "Cs", "Co") and ch not in "\n\t")
    if controls or "\ufffd" in cleaned:
        raise BadInput("binary", reason="binary")
    return cleaned


def handle(desk: Desk, actor: Actor, *, text: str | None = None, action: str | None = None) -> list[Reply]:
    try:
        if action:
            return _action(desk, actor, action)
        cleaned = clean_text(text or "", desk.max_text)
        if not cleaned and not actor.attachments:
            raise BadInput("empty", reason="empty")
        return _text(desk, actor, cleaned)
    except BadInput as exc:
        reason = str(exc.values.get("reason", "bad"))
        log.info("bad input from %s:%s: %s", actor.channel, actor.address, reason)
        return [Reply(say(actor.lang, f"error.{reason}", limit=desk.max_text))]
    except GriddeskError as exc:
        desk.session.rollback()
        log.info("refused for %s:%s: %s %s", actor.channel, actor.address, exc.key, exc.values)
        return [Reply(say(actor.lang, exc.key, **{"what": "", "number": "", "state": "", **exc.values}))]


def _action(desk: Desk, actor: Actor, action: str) -> list[Reply]:
    prefix, _, rest = action.partition(":")
    route = dispatch.ACTIONS.get(prefix)
    if route is None or not dispatch.allowed(route, actor):
        raise BadInput("unknown action", reason="unknown_action")
    return route.handler(desk, actor, rest)


def _text(desk: Desk, actor: Actor, text: str) -> list[Reply]:
    pending = desk.state.pop(desk.pending_key(actor.channel, actor.address))
    command = dispatch.split_command(text)
    if pending is not None and command is None:
        handler = dispatch.PENDING.get(str(pending.get("await")))
        if handler is not None:
            return handler(desk, actor, pending, text)
    if command is not None:
        name, args = command
        route = dispatch.command_for(name, actor)
        if route is None:
            return [Reply(say(actor.lang, "error.not_for_you"))]
        return route.handler(desk, actor, args)
    if not actor.is_staff and (actor.resident is None or actor.resident.building_id is None):
        return dispatch.FREE_TEXT["unbound"](desk, actor, text)
    return dispatch.FREE_TEXT["staff" if actor.is_staff else "resident"](desk, actor, text)

