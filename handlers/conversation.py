"""Channel-neutral conversation values: who is speaking, and what we answer.

Buttons carry an `action`, a short opaque string such as "ack:42" or "rate:42:s": it fits
Telegram's 64-byte callback_data and is parsed back by the action its prefix names (`dispatch.action`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import opencc

from nlu.normalise import half_width, to_simplified
from storage.tables import Identity, Person, Resident

_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
# Not words of any language: links, and codes or numbers such as ZN-20261121-0007, b_ZN-B01 or
# G01 (any run of ASCII letters, digits and joiners that holds a digit).
_NOT_WORDS = re.compile(r"https?://\S+|[A-Za-z0-9_@#:./+-]*[0-9][A-Za-z0-9_@#:./+-]*")


@cache
def _s2t() -> opencc.OpenCC:
    return opencc.OpenCC("s2t")


def written_language(text: str, previous: str) -> str | None:
    """The language a message is written in, by its script, or None when it has no letters.

    Any Han character makes it Chinese: Traditional when OpenCC would change it to Simplified,
    Simplified when it would change it the other way, else (你好 reads the same in both) the
    person's `previous` Chinese. Otherwise Latin words make it English. A slash command's name
    and the Latin words after it are keywords and codes (/figures grid, /rate N b), not English.
    Emoji, numbers and codes alone say nothing: None, so the person's last language stays.
    """
    command = text.lstrip().startswith("/")
    words = _NOT_WORDS.sub(" ", half_width(text))
    if command:
        words = words.lstrip().partition(" ")[2]
    han = "".join(_HAN.findall(words))
    if han:
        if to_simplified(han) != han:
            return "zh-Hant"
        if str(_s2t().convert(han)) != han:
            return "zh-Hans"
        return previous if previous in ("zh-Hans", "zh-Hant") else "zh-Hans"
    if command:
        return None
    return "en" if _LATIN_WORD.search(words) else None


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
    # The address's identity row, when it has one; held here for the whole message, since a
    # session keeps an unchanged row only as long as someone refers to it.
    identity: Identity | None = None
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
