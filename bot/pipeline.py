"""Incoming → identity → handlers (nlu inside) → replies, in one transaction.

    replies = await pipeline.handle(Incoming(channel="web", address="resident:7", text="楼道灯坏了"))

The case, its events and its notices commit together; the direct replies go back to the channel
that asked. One address is served one message at a time (the state store's lock: in-process, or
shared through Redis by every process), so a resident's quick double message cannot race itself,
even when the two arrive at different processes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import logging
import re
import time
from collections.abc import Callable

import anyio
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from bot import metrics
from bot.channels.base import Incoming, Reply
from handlers import intake
from handlers.conversation import Actor
from handlers.desk import Classifier, Desk
from handlers.registry import directory
from handlers.replies import pick_language, say
from storage import registry_cache
from storage import tables as t
from storage.clock import Clock, as_utc
from storage.log_context import log_context, who
from storage.state import StateStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
Deliver = Callable[[Session, list[Reply], dt.datetime], None]
Prepare = Callable[[Incoming], Incoming]
# A lone surrogate is no character at all and no database stores it; PostgreSQL refuses NUL.
UNSTORABLE = re.compile("[\ud800-\udfff\x00]")


def storable_text(value: str) -> str:
    """`value` with lone surrogates and NUL turned into U+FFFD."""
    return UNSTORABLE.sub("\ufffd", value)


def storable(incoming: Incoming) -> Incoming:
    """The message with lone surrogates and NUL turned into U+FFFD, whichever channel brought it:
    its text is then refused politely as unreadable, and whatever is kept of it can be stored."""
    clean = storable_text
    fields = (incoming.address, incoming.text, incoming.action or "", incoming.display_name,
              *(a.ref for a in incoming.attachments))
    if not any(UNSTORABLE.search(value) for value in fields):
        return incoming
    return dataclasses.replace(
        incoming, address=clean(incoming.address), text=clean(incoming.text),
        action=clean(incoming.action) if incoming.action is not None else None,
        display_name=clean(incoming.display_name),
        attachments=tuple(dataclasses.replace(a, ref=clean(a.ref)) for a in incoming.attachments),
    )


class Pipeline:
    def __init__(
        self,
        engine: Engine,
        *,
        state: StateStore,
        classifier: Classifier,
        clock: Clock,
        clarify_below: float = 0.5,
        max_text: int = 2000,
    ) -> None:
        self.engine = engine
        self.state = state
        self.classifier = classifier
        self.clock = clock
        self.clarify_below = clarify_below
        self.max_text = max_text

    def warm_up(self) -> None:
        """Load, before the first message, what serving one loads lazily (handlers.intake.warm_up):
        under load those seconds would otherwise land on the first messages' answers.

        Then what the process has built so far (modules, the NLU's model, the catalogues), which
        lives as long as it does, is left out of the garbage collector's full passes: each would
        walk a quarter of a million objects, a pause of tens to hundreds of milliseconds every few
        hundred messages, on average more than half a millisecond of CPU a message."""
        started = time.perf_counter()
        intake.warm_up()
        gc.freeze()
        log.debug("warmed up in %.1f s; %d objects left out of full collections",
                  time.perf_counter() - started, gc.get_freeze_count())

    async def handle(self, incoming: Incoming, deliver: Deliver | None = None,
                     prepare: Prepare | None = None) -> list[Reply]:
        return await anyio.to_thread.run_sync(self.handle_sync, incoming, deliver, prepare)

    def handle_sync(self, incoming: Incoming, deliver: Deliver | None = None,
                    prepare: Prepare | None = None) -> list[Reply]:
        """Serve one message; `deliver(session, replies, now)` queues the replies in the same
        transaction as the work (channels whose replies go through the outbox use it).

        `prepare(incoming)` runs first, under the address's lock, for what a channel must do
        before the message can be read (WeChat downloads a photo): the next message from the
        same address waits for it, so a description typed right after a photo finds it there.
        """
        incoming = storable(incoming)
        with metrics.intake(incoming.channel), log_context(channel=incoming.channel), \
                self.state.lock(f"address:{incoming.channel}:{incoming.address}"):
            if prepare is not None:
                incoming = storable(prepare(incoming))
            return self._serve(incoming, deliver)

    def _serve(self, incoming: Incoming, deliver: Deliver | None) -> list[Reply]:
        with UnitOfWork(self.engine) as uow:
            opened = metrics.CasesOpened()
            actor = self.actor_for(uow.session, incoming)
            desk = Desk(
                session=uow.session,
                now=self.clock.now(),
                state=self.state,
                classifier=metrics.TimedClassifier(self.classifier),
                clarify_below=self.clarify_below,
                max_text=self.max_text,
            )
            try:
                replies = intake.handle(desk, actor, text=incoming.text, action=incoming.action)
            except Exception:
                log.exception("message from %s failed", who(incoming.address))
                uow.rollback()
                replies = [Reply(say(actor.lang, "error.generic"))]
            if actor.identity is not None:
                _touch(uow.session, actor.identity, desk.now)
            if deliver is not None:
                deliver(uow.session, replies, desk.now)
            opened.note(uow.session)
            uow.commit()
            opened.count()  # after the commit: only committed cases count
            return replies

    def actor_for(self, session: Session, incoming: Incoming) -> Actor:
        """Who is writing: the identity's person or resident, else an unbound newcomer."""
        found = session.connection().execute(
            _WRITER, {"channel": incoming.channel, "address": incoming.address}).first()
        ident: t.Identity | None = None
        resident: t.Resident | None = None
        person = None
        if found is not None:
            ident, resident = t.split(session, found, t.Identity, t.Resident)
            registry_cache.note_version(session, found[-1])
            assert ident is not None
            # Staff are in the registry this process keeps: no join for them.
            person = directory.person(session, ident.person_id) if ident.person_id else None
        if person is not None and not person.active:
            person = None
        lang = pick_language(
            ident.language if ident else None,
            incoming.language_hint,
            person.language if person else None,
            resident.language if resident else None,
        )
        return Actor(
            channel=incoming.channel,
            address=incoming.address,
            lang=lang,
            resident=resident,
            person=person,
            identity=ident,
            attachments=incoming.attachments,
        )


# Who is writing, in one query: the identity with its resident, and the registry's version (the
# unit of work's one look at whether this process's copy of the registry, which holds the staff,
# is stale). Built once: constructing a statement costs more than running a cached one.
_WRITER = (
    select(*t.columns_of(t.Identity, t.Resident), registry_cache.version_column())
    .outerjoin(t.Resident, col(t.Resident.id) == col(t.Identity.resident_id))
    .where(col(t.Identity.channel) == bindparam("channel"), col(t.Identity.address) == bindparam("address"))
)
_TOUCH = (
    update(t.Identity.__table__)  # type: ignore[attr-defined]
    .where(t.Identity.__table__.c.id == bindparam("identity_id"))  # type: ignore[attr-defined]
    .values(last_inbound_at=bindparam("now"), reachable=True)
)


# How stale an identity's last inbound time may be left: a resident's conversation is several
# messages a minute, and an UPDATE for each would rewrite the same row (a new row version on
# PostgreSQL) to move a time nothing needs to the second.
TOUCH_EVERY = dt.timedelta(seconds=60)


def _touch(session: Session, ident: t.Identity, now: dt.datetime) -> None:
    """The identity wrote just now, so it is reachable, and its last inbound time is now (to
    TOUCH_EVERY). One UPDATE at the end of the message, without the unit of work, so its row is
    locked only from there to the commit; or, when the message changed the identity already (its
    language), together with that change, at the commit; or none, when the row is reachable and
    was touched less than TOUCH_EVERY ago."""
    if ident in session.dirty:
        ident.last_inbound_at, ident.reachable = now, True
        return
    last = ident.last_inbound_at
    if ident.reachable and last is not None and now - as_utc(last) < TOUCH_EVERY:
        return
    session.connection().execute(_TOUCH, {"identity_id": ident.id, "now": now})
    set_committed_value(ident, "last_inbound_at", now)  # the session's copy says what the row says
    set_committed_value(ident, "reachable", True)
