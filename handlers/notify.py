"""Notices to people, written to the outbox in the caller's transaction.

Each notice is rendered in the recipient's language and addressed to the channel where they can
be reached: a resident on the channel of their case (else any channel they use, else the web
chat inbox); a staff member on WeCom, Telegram or WeChat (in that order, unless their registry
entry sets another) when bound and reachable, else the web chat.

The language is the identity's (the one the person last wrote in there), else the recipient's
own; only `tell` knows which identity it writes to, so a value that has to be written in that
language (a phrase, a date, a case card) is passed as a `Localised` and rendered by `tell`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.replies import say, when
from storage import outbox
from storage import tables as t
from storage.db import upsert_insert

ButtonSpec = tuple[str, str]  # (catalogue key of the label, action)
# What a catalogue message is formatted with: text, a number, a `Localised`. Typed Any so that a
# helper can pass its `**values` on to `tell` without restating tell's own options.
MessageValue = Any
# The web chat inbox: it shows the outbox's sent rows of an address, so a notice to it is
# delivered by being written (as sent), with no sender round after the commit.
WEB_INBOX = "web"
CHANNEL_PREFERENCE = ("telegram", "wechat", WEB_INBOX)
# Staff hear first where they work: WeCom (any time, interactive cards), then Telegram, then the
# Official Account (whose 48 h window misses cards), then the web inbox; a person's registry
# entry may set another order (`notify_order`).
STAFF_PREFERENCE = ("wecom", "telegram", "wechat", WEB_INBOX)


@dataclass(frozen=True)
class Localised:
    """A notice's value written in the recipient's language, rendered by `tell`."""

    render: Callable[[str], object]


def phrase(key: str, **values: object) -> Localised:
    """The catalogue text `key` in the recipient's language."""
    return Localised(lambda lang: say(lang, key, **values))


def moment(at: dt.datetime, timezone: str) -> Localised:
    """`at` as the recipient reads dates, in the community's time zone."""
    return Localised(lambda lang: when(lang, at, timezone))


def web_address(resident: t.Resident | None = None, person: t.Person | None = None) -> str:
    if person is not None:
        return f"person:{person.code}"
    assert resident is not None
    return f"resident:{resident.id}"


def ensure_identity(
    session: Session,
    channel: str,
    address: str,
    now: dt.datetime,
    *,
    resident: t.Resident | None = None,
    person: t.Person | None = None,
) -> t.Identity:
    """The identity of (channel, address), created bound to the resident or person when new.

    Two transactions may create the same one at once (two notices to a staff member's web inbox,
    in two processes): the insert skips a row another has written, waiting for that one to
    commit on PostgreSQL, and then reads whichever row is there.
    """
    find = select(t.Identity).where(col(t.Identity.channel) == channel, col(t.Identity.address) == address)
    row = session.scalars(find).first()
    if row is None:
        session.execute(
            upsert_insert(session, t.Identity)
            .values(channel=channel, address=address, resident_id=resident.id if resident else None,
                    person_id=person.id if person else None, created_at=now)
            .on_conflict_do_nothing(index_elements=["channel", "address"])
        )
        row = session.scalars(find).one()
    return row


def staff_order(person: t.Person) -> tuple[str, ...]:
    """The channels a staff notice tries, in order: the person's own order, then the default."""
    own = tuple(c.strip() for c in (person.notify_order or "").split(",") if c.strip())
    return own + tuple(c for c in STAFF_PREFERENCE if c not in own)


def _pick(identities: Sequence[t.Identity], prefer: str | None,
          order_after: Sequence[str] = CHANNEL_PREFERENCE) -> t.Identity | None:
    reachable = [i for i in identities if i.reachable]
    order = ((prefer,) if prefer else ()) + tuple(order_after)
    for channel in order:
        for ident in reachable:
            if ident.channel == channel:
                return ident
    return None


def _reachable(session: Session, *, resident: t.Resident | None, person: t.Person | None,
               prefer: str | None) -> t.Identity | None:
    if person is not None:
        stmt, owner, order = _PERSONS_IDENTITIES, person.id, staff_order(person)
    else:
        assert resident is not None
        stmt, owner, order = _RESIDENTS_IDENTITIES, resident.id, CHANNEL_PREFERENCE
    session.flush()  # what a query's autoflush would do: an account bound in this transaction counts
    found = session.connection().execute(stmt, {"owner": owner})
    return _pick([t.split(session, row, t.Identity)[0] for row in found], prefer, order)


# Built once: every notice asks one of them, and building a statement costs more than running it.
# Core reads (tables.split): the ORM's loading cost as much as the query.
_PERSONS_IDENTITIES = (select(*t.columns_of(t.Identity)).where(col(t.Identity.person_id) == bindparam("owner"))
                       .order_by(col(t.Identity.id)))
_RESIDENTS_IDENTITIES = (select(*t.columns_of(t.Identity)).where(col(t.Identity.resident_id) == bindparam("owner"))
                         .order_by(col(t.Identity.id)))


def address_of(
    session: Session,
    now: dt.datetime,
    *,
    resident: t.Resident | None = None,
    person: t.Person | None = None,
    prefer: str | None = None,
) -> t.Identity:
    """Where a notice to this recipient goes; their web chat inbox when nothing else reaches them."""
    chosen = _reachable(session, resident=resident, person=person, prefer=prefer)
    if chosen is None:
        chosen = ensure_identity(
            session, WEB_INBOX, web_address(resident, person), now, resident=resident, person=person
        )
    return chosen


def _language(ident: t.Identity | None, person: t.Person | None, resident: t.Resident | None) -> str:
    who = person if person is not None else resident
    assert who is not None
    return (ident.language if ident is not None else None) or who.language


def language_of(session: Session, *, resident: t.Resident | None = None,
                person: t.Person | None = None, prefer: str | None = None) -> str:
    """The language `tell` writes to this recipient in, for a text composed before it is told.
    Reads only: a recipient nothing reaches yet gets their own language, as `tell` would."""
    return _language(_reachable(session, resident=resident, person=person, prefer=prefer), person, resident)


def render_buttons(lang: str, rows: Sequence[Sequence[ButtonSpec]]) -> list[list[dict[str, str]]]:
    return [[{"label": say(lang, key), "action": action} for key, action in row] for row in rows]


def tell(
    session: Session,
    now: dt.datetime,
    key: str,
    *,
    resident: t.Resident | None = None,
    person: t.Person | None = None,
    case: t.Case | None = None,
    prefer: str | None = None,
    buttons: Sequence[Sequence[ButtonSpec]] = (),
    topic: str = "",
    dedupe_key: str | None = None,
    media: Sequence[int] = (),
    **values: MessageValue,
) -> None:
    """Queue the catalogue message `key` for a resident or a person, with the kept photos
    `media` for a channel that can show them; `Localised` values are rendered in the language
    the message is written in."""
    ident = address_of(session, now, resident=resident, person=person, prefer=prefer)
    lang = _language(ident, person, resident)
    values = {k: v.render(lang) if isinstance(v, Localised) else v for k, v in values.items()}
    outbox.enqueue(
        session,
        channel=ident.channel,
        address=ident.address,
        identity_id=ident.id,
        resident_id=resident.id if resident else None,
        person_id=person.id if person else None,
        case_id=case.id if case else None,
        text=say(lang, key, **values),
        buttons=render_buttons(lang, buttons),
        now=now,
        topic=topic or key,
        dedupe_key=dedupe_key,
        media=media,
        delivered=ident.channel == WEB_INBOX,
    )
