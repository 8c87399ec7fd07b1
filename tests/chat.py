"""Conversation-style test driver over the real pipeline and outbox.

    chat = Chat(services)
    reply = await chat.resident(1).says("楼道灯坏了三天")
    assert "ZN-" in reply.text
    notices = await chat.staff("zn-gw01").inbox()
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select

from bot.app import Services
from bot.channels.base import Incoming
from handlers.conversation import Reply
from handlers.notify import ensure_identity
from storage import tables as t
from storage.unit_of_work import UnitOfWork

# A proposal's number in the example community's council.
PROPOSAL = re.compile(r"ZN-P-2026-\d{4}")


@dataclass
class Said:
    replies: list[Reply]

    @property
    def text(self) -> str:
        return "\n".join(r.text for r in self.replies)

    def action(self, label: str) -> str:
        for reply in self.replies:
            for row in reply.buttons:
                for button in row:
                    if button.label == label:
                        return button.action
        raise AssertionError(f"no button {label!r} in {[b.label for r in self.replies for row in r.buttons for b in row]}")


@dataclass
class Notice:
    text: str
    buttons: list[list[dict[str, str]]]

    def action(self, label: str) -> str:
        for row in self.buttons:
            for button in row:
                if button["label"] == label:
                    return button["action"]
        raise AssertionError(f"no button {label!r}")


@dataclass
class Speaker:
    services: Services
    channel: str
    address: str
    seen: int = 0
    notices: list[Notice] = field(default_factory=list)

    async def says(self, text: str) -> Said:
        return Said(await self.services.pipeline.handle(Incoming(self.channel, self.address, text=text)))

    async def presses(self, action: str) -> Said:
        return Said(await self.services.pipeline.handle(Incoming(self.channel, self.address, action=action)))

    async def proposes(self, text: str) -> str:
        """Files `text` as a new proposal, past any offer of similar open ones; its number."""
        said = await self.says(text)
        if any(b.action == "pn:" for r in said.replies for row in r.buttons for b in row):
            said = await self.presses("pn:")
        match = PROPOSAL.search(said.text)
        assert match, said.text
        return match.group(0)

    async def inbox(self) -> list[Notice]:
        """Notices delivered to this speaker since the last look (drains the outbox first)."""
        await self.services.sender.drain()
        with UnitOfWork(self.services.engine) as uow:
            rows = uow.session.scalars(
                select(t.Outbox).where(t.Outbox.channel == self.channel, t.Outbox.address == self.address,
                                       t.Outbox.id > self.seen).order_by(t.Outbox.id)
            ).all()
            fresh = [Notice(r.text, r.buttons) for r in rows]
            if rows:
                self.seen = rows[-1].id or self.seen
        self.notices += fresh
        return fresh


class Chat:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._speakers: dict[str, Speaker] = {}

    def _speaker(self, address: str) -> Speaker:
        if address not in self._speakers:
            self._speakers[address] = Speaker(self.services, "web", address)
        return self._speakers[address]

    def resident(self, index: int = 0) -> Speaker:
        """The index-th demo resident of the example community, on the web chat."""
        with UnitOfWork(self.services.engine) as uow:
            rows = uow.session.scalars(select(t.Resident).where(t.Resident.demo.is_(True)).order_by(t.Resident.id)).all()
            resident = rows[index]
            ensure_identity(uow.session, "web", f"resident:{resident.id}", self.services.clock.now(), resident=resident)
            uow.commit()
        return self._speaker(f"resident:{resident.id}")

    def staff(self, code: str) -> Speaker:
        with UnitOfWork(self.services.engine) as uow:
            person = uow.session.scalars(select(t.Person).where(t.Person.code == code)).one()
            ensure_identity(uow.session, "web", f"person:{code}", self.services.clock.now(), person=person)
            uow.commit()
        return self._speaker(f"person:{code}")

    def newcomer(self, address: str) -> Speaker:
        return self._speaker(address)
