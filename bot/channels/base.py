"""Channel-neutral values at the boundary between a platform and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from handlers.conversation import Attachment, Button, Reply

__all__ = ["Attachment", "Button", "ChannelSender", "Incoming", "Outgoing", "Reply", "SendResult"]


@dataclass(frozen=True)
class Incoming:
    """One thing a person did on a channel: wrote text, pressed a button, sent a photo."""

    channel: str
    address: str
    text: str = ""
    action: str | None = None
    attachments: tuple[Attachment, ...] = ()
    language_hint: str | None = None
    display_name: str = ""


@dataclass(frozen=True)
class Outgoing:
    """A queued notice as the sender hands it to a channel.

    media: ids of kept photos (storage.media) to send before the text, on a channel that can
    (Telegram); WeChat sends a link to a page of them instead.
    """

    id: int
    channel: str
    address: str
    text: str
    buttons: list[list[dict[str, str]]] = field(default_factory=list)
    media: tuple[int, ...] = ()


@dataclass(frozen=True)
class SendResult:
    """What a channel made of one send.

    ok: delivered. retry_after: try again after that many seconds (rate limit, 5xx).
    unreachable: the recipient cannot be reached here (blocked, never started, no window).
    """

    ok: bool
    retry_after: float | None = None
    unreachable: bool = False
    error: str = ""


class ChannelSender(Protocol):
    channel: str

    async def send(self, message: Outgoing) -> SendResult: ...
