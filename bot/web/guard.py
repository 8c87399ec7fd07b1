"""Pure ASGI middleware around the whole web app.

- `BodyLimit` counts the bytes of a request body as they arrive and answers 413 the moment they
  pass the cap, whatever Content-Length or Transfer-Encoding say: a route never reads, let alone
  parses, more than the cap. The 413 closes the connection, so the server stops reading a body
  it has refused instead of draining the rest. A few paths have a cap of their own
  (`PER_PATH_MAX_BYTES`): the web chat's photo upload takes a photo as large as the other
  channels keep (storage.media.MAX_MEDIA_BYTES), far over the app-wide cap; the WeChat and
  WeCom pushes are small XML and get far less (bot.channels.wechat.MAX_PUSH_BYTES).
- `AnswerErrors` turns an exception that no route handled into a plain 500 and logs it once.
  Starlette's own error middleware re-raises after answering, and uvicorn then closes the
  connection under a keep-alive client, whose next request fails; answered here, the
  connection stays usable.

Both are plain ASGI (not `@app.middleware("http")`, Starlette's BaseHTTPMiddleware), so the
request body streams through them untouched and an error is answered exactly once.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.channels.wechat import MAX_PUSH_BYTES
from bot.web.access_log import redact
from storage.media import MAX_MEDIA_BYTES

# Paths whose bodies may differ from the app-wide cap. A phone's photo is a few megabytes; the
# multipart framing and a caption add little.
PER_PATH_MAX_BYTES = {"/api/chat/photo": MAX_MEDIA_BYTES + 64 * 1024,
                      "/wechat": MAX_PUSH_BYTES, "/wecom": MAX_PUSH_BYTES}

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """Raised into the route that reads past the cap; BodyLimit answers 413 instead."""


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413,
                        headers={"Connection": "close"})


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.per_path = PER_PATH_MAX_BYTES if per_path is None else per_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get(scope["path"], self.default_max_bytes)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > max_bytes:
            await _too_large(max_bytes)(scope, receive, send)
            return
        received = 0
        refused = False
        started = False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    refused = True
                    raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # whatever the route made of the cut body, the answer is the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
        except Exception:
            # A route that turned the cut body into some other failure: still a 413.
            if not refused or started:
                raise
        if refused and not started:
            log.info("%s %s: body over %d bytes refused", scope["method"], redact(scope["path"]), max_bytes)
            await _too_large(max_bytes)(scope, receive, send)


class AnswerErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if started:  # half an answer is out: only closing the connection can end it
                raise
            log.exception("%s %s failed", scope["method"], redact(scope["path"]))
            answer: Any = JSONResponse({"detail": "internal error"}, status_code=500)
            await answer(scope, receive, send)
