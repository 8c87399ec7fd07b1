"""Channel-neutral conversation values: who is speaking, and what we answer.

Buttons carry an `action`, a short opaque string such as "ack:42" or "rate:42:s": it fits
Telegram's 64-byte callback_data and is parsed back by `handlers.actions`.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.tables import Person, Resident


@dataclass(frozen=True)
class Attachment:
    """A photo or voice message (a reference to its bytes) or a shared location sent with a message."""

    kind: str  # photo | voice | location
    ref: str = ""
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True)
class Button:
    label: str
    action: str

    def to_json(self) -> dict[str, str]:
        return {"label": self.label, "action": self.action}


@dataclass(frozen=True)
class Reply:
    """One message to the person who wrote: text, optional button rows, optional request for text."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    expects_text: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "buttons": [[b.to_json() for b in row] for row in self.buttons],
            "expects_text": self.expects_text,
        }


@dataclass
class Actor:
    """The person behind a message: a resident or a staff member, on one channel address."""

    channel: str
    address: str
    lang: str
    resident: Resident | None = None
    person: Person | None = None
    identity_id: int | None = None
    attachments: tuple[Attachment, ...] = ()

    @property
    def is_staff(self) -> bool:
        return self.person is not None

    @property
    def community_id(self) -> int | None:
        if self.person is not None:
            return self.person.community_id
        if self.resident is not None:
            return self.resident.community_id
        return None
