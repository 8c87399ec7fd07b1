"""Staff invites: a one-time token that ties a chat account to a registry person.

    token = staff_invites.issue(session, "zhang_li", now, ttl=dt.timedelta(hours=72))
    # the staff member opens https://t.me/<bot>?start=s_<token>
    replies = staff_invites.redeem(session, token, channel="telegram", address="2002", now=now,
                                   lang="zh-Hans")

An invite is used once and refused after it expires. Redeeming it makes the account the person's
only account on that channel: the account's earlier resident binding and the person's earlier
account on the channel are released, so case details (phone, address) reach the person alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.conversation import Reply
from handlers.errors import InvalidState, NotFound
from handlers.registry import directory
from handlers.replies import say
from storage import tables as t

# Deep-link payloads allow [A-Za-z0-9_-] and 64 characters; "s_" + 22 characters fits.
TOKEN_BYTES = 16
PREFIX = "s_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(session: Session, person_code: str, now: dt.datetime, ttl: dt.timedelta) -> str:
    """A new invite for the active person with this code; NotFound for an unknown code."""
    person = session.scalars(
        select(t.Person).where(col(t.Person.code) == person_code, col(t.Person.active).is_(True))
    ).first()
    if person is None:
        raise NotFound(what=person_code)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(t.StaffInvite(token_hash=token_hash(token), person_id=person.id or 0, created_at=now,
                              expires_at=now + ttl))
    session.flush()
    return token


def redeem(session: Session, token: str, *, channel: str, address: str, now: dt.datetime,
           lang: str) -> list[Reply]:
    """Bind the account to the invite's person; a clear reply for an unknown, used or expired token.

    The caller commits; a refusal changes nothing.
    """
    invite = session.scalars(
        select(t.StaffInvite).where(col(t.StaffInvite.token_hash) == token_hash(token.strip()))
    ).first()
    person = session.get(t.Person, invite.person_id) if invite is not None else None
    if invite is None or person is None or not person.active:
        return [Reply(say(lang, "telegram.invite_unknown"))]
    if invite.used_at is not None:
        if invite.used_channel == channel and invite.used_address == address:
            return [Reply(say(lang, "telegram.invite_done", name=person.name, posts=_posts(session, person, lang)))]
        return [Reply(say(lang, "telegram.invite_used"))]
    if _aware(invite.expires_at) <= now:
        return [Reply(say(lang, "telegram.invite_expired"))]
    # Single use even when two chats race for it: only one conditional update succeeds.
    taken = session.execute(
        update(t.StaffInvite)
        .where(col(t.StaffInvite.id) == invite.id, col(t.StaffInvite.used_at).is_(None))
        .values(used_at=now, used_channel=channel, used_address=address)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0) != 1:
        raise InvalidState(what="invite")
    bind_person(session, person, channel=channel, address=address, now=now, lang=lang)
    return [Reply(say(lang, "telegram.invite_done", name=person.name, posts=_posts(session, person, lang)))]


def bind_person(session: Session, person: t.Person, *, channel: str, address: str, now: dt.datetime,
                lang: str) -> t.Identity:
    """Make (channel, address) the person's one account on that channel."""
    for other in session.scalars(
        select(t.Identity).where(col(t.Identity.channel) == channel,
                                 col(t.Identity.person_id) == person.id,
                                 col(t.Identity.address) != address)
    ):
        other.person_id = None
    ident = session.scalars(
        select(t.Identity)
        .where(col(t.Identity.channel) == channel, col(t.Identity.address) == address)
    ).first()
    if ident is None:
        ident = t.Identity(channel=channel, address=address, created_at=now)
        session.add(ident)
    ident.person_id = person.id
    ident.resident_id = None
    ident.language = lang
    ident.reachable = True
    ident.unreachable_reason = ""
    ident.last_inbound_at = now
    session.flush()
    return ident


def _posts(session: Session, person: t.Person, lang: str) -> str:
    names = [p.name for p in directory.posts_of(session, person.community_id)
             if person.id in (p.a_holder_id, p.b_holder_id)]
    return (", " if lang == "en" else "、").join(names) or "—"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
