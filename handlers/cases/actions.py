"""A staff member's step on a case taken outside chat (the console): acknowledge, reply,
transfer, resolve, return (退单), reclassify (改分类).

Each goes through the very function the chat's buttons and commands call (handlers/cases/lifecycle.py), so
the resident, the first responder and the new holder are told exactly as from chat.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from handlers.cases import lifecycle
from handlers.errors import BadInput
from storage import tables as t

ACTIONS = ("ack", "reply", "transfer", "resolve", "return", "reclassify")
# The steps whose chat button asks for a text before anything happens (ForceReply in Telegram).
NEEDS_TEXT = ("reply", "return")


def act(session: Session, case: t.Case, person: t.Person, action: str, now: dt.datetime, *,
        text: str = "", post: str = "", kind: str = "", category: str = "") -> t.Case:
    """Carry out `action` on `case` as `person`; NotFound when they may not handle it,
    InvalidState when the case's state does not allow it, BadInput for a missing text or post."""
    text = text.strip()
    if action not in ACTIONS:
        raise BadInput(f"unknown action {action!r}", reason="usage")
    if action in NEEDS_TEXT and not text:
        raise BadInput("text needed", reason="text_needed")
    if action == "ack":
        return lifecycle.acknowledge(session, case, person, now)
    if action == "reply":
        return lifecycle.reply(session, case, person, text, now)
    if action == "transfer":
        if not post:
            raise BadInput("post needed", reason="post_needed")
        return lifecycle.transfer(session, case, person, post, text, now)
    if action == "resolve":
        return lifecycle.resolve(session, case, person, text, now)
    if action == "reclassify":
        return lifecycle.reclassify(session, case, person, kind or case.kind, category or case.category, now)
    return lifecycle.return_case(session, case, person, text, now)
