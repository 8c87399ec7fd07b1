"""The web chat channel: a notice is delivered when it is in the person's inbox.

The page polls `/api/chat/inbox` for rows of its address; marking a row sent is the delivery.
Addresses are "resident:<id>" and "person:<code>".
"""

from __future__ import annotations

from bot.channels.base import Outgoing, SendResult

CHANNEL = "web"


class WebChatSender:
    channel = CHANNEL

    async def send(self, message: Outgoing) -> SendResult:
        return SendResult(ok=True)
