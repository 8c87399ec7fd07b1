"""Who gets into the centre's console: passwords, one-time password links, lock-out, sessions,
and the record of who saw a resident's phone or address.

    token = console_access.issue_password_link(session, "zhang_li", now)   # the CLI prints a link
    console_access.set_password(session, token, "a long passphrase", now)
    person = console_access.sign_in(session, "zhang_li", "a long passphrase", now)
    person = console_access.wecom_person(session, "zhangli")   # WeCom's sign-in said who

Passwords are kept as argon2 hashes. Failed sign-ins are counted per person in the database, so
every process sees the same count: LOCK_AFTER failures in a row lock the person out for
LOCK_FOR. Links and session tokens are kept as SHA-256 only, so a database dump opens nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.errors import BadInput, NotAllowed, NotFound
from storage import tables as t

LOCK_AFTER = 5
LOCK_FOR = dt.timedelta(minutes=15)
LINK_TTL = dt.timedelta(hours=72)
SESSION_TTL = dt.timedelta(hours=12)
MIN_PASSWORD = 10
MAX_PASSWORD = 256
TOKEN_BYTES = 24

_hasher = PasswordHasher()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _active_person(session: Session, code: str) -> t.Person | None:
    return session.scalars(select(t.Person).where(col(t.Person.code) == code.strip(),
                                                  col(t.Person.active).is_(True))).first()


# --------------------------------------------------------------------------- password links


def issue_password_link(session: Session, person_code: str, now: dt.datetime,
                        ttl: dt.timedelta = LINK_TTL) -> str:
    """A one-time token for the person to set (or reset) their console password."""
    person = _active_person(session, person_code)
    if person is None:
        raise NotFound(what=person_code)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(t.PasswordLink(token_hash=token_hash(token), person_id=person.id or 0, created_at=now,
                               expires_at=now + ttl))
    session.flush()
    return token


def _usable_link(session: Session, token: str, now: dt.datetime) -> t.PasswordLink:
    link = session.scalars(select(t.PasswordLink)
                           .where(col(t.PasswordLink.token_hash) == token_hash(token.strip()))).first()
    if link is None or link.used_at is not None or _aware(link.expires_at) < now:
        raise NotFound(what="link")
    return link


def link_person(session: Session, token: str, now: dt.datetime) -> t.Person:
    """The person a still usable link is for; NotFound when it is unknown, used or expired."""
    person = session.get(t.Person, _usable_link(session, token, now).person_id)
    if person is None or not person.active:
        raise NotFound(what="link")
    return person


def set_password(session: Session, token: str, password: str, now: dt.datetime) -> t.Person:
    """Use the link once: store the new password's hash and lift any lock-out."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadInput("password length", reason="password_length")
    link = _usable_link(session, token, now)
    person = link_person(session, token, now)
    link.used_at = now
    row = session.get(t.StaffPassword, person.id)
    if row is None:
        row = t.StaffPassword(person_id=person.id or 0)
        session.add(row)
    row.password_hash = _hasher.hash(password)
    row.set_at = now
    row.failed_count = 0
    row.locked_until = None
    session.flush()
    return person


# --------------------------------------------------------------------------- signing in


class LockedOut(NotAllowed):
    key = "error.locked_out"

    def __init__(self, until: dt.datetime) -> None:
        super().__init__("locked out", until=until)
        self.until = until


def sign_in(session: Session, person_code: str, password: str, now: dt.datetime) -> t.Person:
    """The person whose password this is; NotAllowed otherwise (an unknown id, no password set
    and a wrong password read alike), LockedOut while locked out. The caller commits either way:
    a failure is counted."""
    person = _active_person(session, person_code)
    row = session.get(t.StaffPassword, person.id) if person is not None else None
    if person is None or row is None or not row.password_hash:
        raise NotAllowed("wrong id or password")
    if row.locked_until is not None and _aware(row.locked_until) > now:
        raise LockedOut(_aware(row.locked_until))
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        _count_failure(session, row, now)
        if row.locked_until is not None and _aware(row.locked_until) > now:
            raise LockedOut(_aware(row.locked_until)) from None
        raise NotAllowed("wrong id or password") from None
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    row.failed_count = 0
    row.locked_until = None
    return person


def wecom_person(session: Session, userid: str) -> t.Person:
    """The active person whose WeCom member id this is (WeCom returns ids lowercased, a registry
    may not write them so); NotAllowed for anyone else. Only people have a member id: a resident
    never signs in this way."""
    wanted = userid.strip().lower()
    person = session.scalars(select(t.Person).where(
        func.lower(col(t.Person.wecom_userid)) == wanted, col(t.Person.active).is_(True))).first() if wanted else None
    if person is None:
        raise NotAllowed("no staff member has this WeCom id")
    return person


def _count_failure(session: Session, row: t.StaffPassword, now: dt.datetime) -> None:
    # Incremented in the database, not in Python: two processes failing at once count twice.
    session.execute(update(t.StaffPassword).where(col(t.StaffPassword.person_id) == row.person_id)
                    .values(failed_count=col(t.StaffPassword.failed_count) + 1))
    session.refresh(row)
    if row.failed_count >= LOCK_AFTER:
        row.failed_count = 0
        row.locked_until = now + LOCK_FOR
    session.flush()


# --------------------------------------------------------------------------- sessions


def open_session(session: Session, address: str, now: dt.datetime, ttl: dt.timedelta = SESSION_TTL) -> str:
    """A new session for a web address; the token goes into the signed cookie."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(t.WebSession(token_hash=token_hash(token), address=address, created_at=now,
                             expires_at=now + ttl))
    session.flush()
    return token


def session_address(session: Session, token: str, now: dt.datetime) -> str | None:
    """The address of a live session; None once it ended or expired."""
    row = session.scalars(select(t.WebSession).where(col(t.WebSession.token_hash) == token_hash(token))).first()
    if row is None or row.ended_at is not None or _aware(row.expires_at) < now:
        return None
    return row.address


def end_session(session: Session, token: str, now: dt.datetime) -> None:
    session.execute(update(t.WebSession).where(col(t.WebSession.token_hash) == token_hash(token),
                                               col(t.WebSession.ended_at).is_(None))
                    .values(ended_at=now))


# --------------------------------------------------------------------------- who saw a contact


def record_contact_view(session: Session, person: t.Person, case: t.Case, now: dt.datetime) -> None:
    session.add(t.ContactView(person_id=person.id or 0, case_id=case.id or 0, at=now))


@dataclass(frozen=True)
class ContactViewLine:
    at: dt.datetime
    person_code: str
    person_name: str
    case_number: str


def contact_views(session: Session, director: t.Person, limit: int = 200) -> list[ContactViewLine]:
    """The latest views of residents' contacts in the director's community, newest first."""
    if not director.has_role("director"):
        raise NotAllowed("the director's list")
    stmt = (select(t.ContactView, t.Person, t.Case)
            .join(t.Person, col(t.Person.id) == col(t.ContactView.person_id))
            .join(t.Case, col(t.Case.id) == col(t.ContactView.case_id))
            .where(col(t.Case.community_id) == director.community_id)
            .order_by(col(t.ContactView.at).desc(), col(t.ContactView.id).desc()).limit(limit))
    return [ContactViewLine(at=_aware(view.at), person_code=person.code, person_name=person.name,
                            case_number=case.number)
            for view, person, case in session.execute(stmt).all()]
