"""One id per HTTP request, on every log line the request causes and on its answer.

`RequestId` takes the `X-Request-ID` the reverse proxy sends (nginx's `$request_id`, see
deploy/nginx/griddesk.conf) when it is a plain token, else makes one, sets it in the log
context for the request (storage/log_context.py) and returns it as `X-Request-ID`. Work the
request starts in the background (a Telegram update handled after the 200) inherits it.

Plain ASGI, like bot/web/guard.py: the body streams through untouched.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.log_context import log_context

HEADER = b"x-request-id"
# What a client may choose: short, and nothing that could forge or break a log line.
ACCEPTED = re.compile(rb"[A-Za-z0-9._-]{8,64}")


def request_id_of(scope: Scope) -> str:
    given = dict(scope["headers"]).get(HEADER, b"")
    return given.decode("ascii") if ACCEPTED.fullmatch(given) else uuid.uuid4().hex


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode("ascii"))]}
            await send(message)

        with log_context(request_id=rid):
            await self.app(scope, receive, tagged)
