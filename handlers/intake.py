"""One message in, replies out: the entry every channel calls.

    replies = intake.handle(desk, actor, text="楼道灯坏了三天")
    replies = intake.handle(desk, actor, action="ack:42")

Order of precedence: a button action; a cancel (取消, 算了, never mind: `nlu.is_cancel`), which
drops a pending prompt, else withdraws the case the resident filed just before, and is never
filed itself; an answer to a pending prompt; a command; for a resident not yet bound to a
building, the binding dialogue; else the free-text handler (the NLU path for residents, the help
text for staff). Every GriddeskError becomes a clear reply and changes nothing: the caller
commits only when `handle` returns normally.

A reply is in the language of the message it answers when the message has letters
(`written_language`), and that language is remembered for the channel: notices follow it, and a
message without letters (👍, a number, a button) is answered in it.
"""

from __future__ import annotations

import logging
import unicodedata

from handlers import dispatch
from handlers.cases import (
    chat as case_chat,  # registers the case commands and actions; withdraws a case just filed
)
from handlers.conversation import Actor, Reply, written_language
from handlers.council import chat as council_chat  # noqa: F401  (registers the council's commands)
from handlers.council import proposals as council_proposals
from handlers.desk import Desk
from handlers.errors import BadInput, GriddeskError
from handlers.replies import LANGUAGES, catalogue, say
from handlers.watch import chat as watch_chat  # noqa: F401  (registers /overdue, /dead, /digest)
from nlu.cancel import is_cancel
from storage.log_context import who

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Load now what the first message of some kind would load under load: the council's
    similarity check imports scikit-learn's text features (seconds, holding Python's import lock
    while every other proposal in the process waits), the OpenCC converters and the catalogues."""
    council_proposals.similarities(["建议加装路灯"], ["建議增設路燈"])
    written_language("楼道灯坏了", "zh-Hans")  # builds the OpenCC converters that tell scripts apart
    for lang in LANGUAGES:
        catalogue(lang)  # reads the message catalogues' YAML


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
        follow_language(desk, actor, cleaned)  # unreadable or oversized input says nothing of it
        if not cleaned and not actor.attachments:
            raise BadInput("empty", reason="empty")
        return _text(desk, actor, cleaned)
    except BadInput as exc:
        reason = str(exc.values.get("reason", "bad"))
        log.info("bad input from %s: %s", who(actor.address), reason)
        return [Reply(say(actor.lang, f"error.{reason}", limit=desk.max_text))]
    except GriddeskError as exc:
        desk.session.rollback()
        remember_language(desk, actor)  # the rollback forgot it; the refusal changes nothing else
        log.info("refused for %s: %s", who(actor.address), exc.key)  # its values may quote the text
        return [Reply(say(actor.lang, exc.key, **{"what": "", "number": "", "state": "", **exc.values}))]


def follow_language(desk: Desk, actor: Actor, text: str) -> None:
    """Answer in the language the message is written in, and remember it for this channel."""
    lang = written_language(text, actor.lang)
    if lang is not None:
        actor.lang = lang
        remember_language(desk, actor)


def remember_language(desk: Desk, actor: Actor) -> None:
    """Store the actor's language on their identity: notices to this channel are written in it."""
    if actor.identity is not None and actor.identity.language != actor.lang:
        actor.identity.language = actor.lang


def _action(desk: Desk, actor: Actor, action: str) -> list[Reply]:
    prefix, _, rest = action.partition(":")
    route = dispatch.ACTIONS.get(prefix)
    if route is None or not dispatch.allowed(route, actor):
        raise BadInput("unknown action", reason="unknown_action")
    return route.handler(desk, actor, rest)


def _text(desk: Desk, actor: Actor, text: str) -> list[Reply]:
    pending = desk.state.pop(desk.pending_key(actor.channel, actor.address))
    command = dispatch.split_command(text)
    if command is None and is_cancel(text):
        return _cancel(desk, actor, pending)
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



def _cancel(desk: Desk, actor: Actor, pending: dict[str, object] | None) -> list[Reply]:
    """取消 / 算了 / never mind: the question we asked is dropped (it was popped already); with
    none open, a resident's case filed a moment ago is withdrawn. Nothing is ever filed."""
    if pending is not None:
        return [Reply(say(actor.lang, "intake.cancelled"))]
    if not actor.is_staff and actor.resident is not None:
        withdrawn = case_chat.withdraw_just_filed(desk, actor)
        if withdrawn is not None:
            return withdrawn
    return [Reply(say(actor.lang, "intake.nothing_to_cancel"))]
