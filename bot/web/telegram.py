"""`POST /telegram/webhook`: Telegram's updates, stored and acknowledged at once.

1. The `X-Telegram-Bot-Api-Secret-Token` header is compared in constant time with
   TELEGRAM_WEBHOOK_SECRET → 401 and nothing stored on a mismatch.
2. The body must be a JSON object with an integer `update_id` → 400 otherwise.
3. The update is deduplicated and stored (bot/telegram_runtime.py) and the answer is 200 at once,
   also for a duplicate. Handlers run afterwards, per chat in order; their failures are recorded,
   never answered with a 5xx, so Telegram does not redeliver and freeze the chat.
4. Only when the update could not be stored at all (the database is down) the answer is 503, so
   Telegram delivers it again later.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bot.pipeline import storable_text
from bot.web.deps import RETRY_AFTER_SECONDS, STATE_DOWN, Services

log = logging.getLogger(__name__)
router = APIRouter()
SECRET_HEADER = "x-telegram-bot-api-secret-token"


@router.post("/telegram/webhook", include_in_schema=False)
async def webhook(request: Request, services: Services) -> Response:
    runtime = services.telegram
    if runtime is None:
        return JSONResponse({"detail": "the Telegram channel is not configured"}, status_code=404)
    expected = services.settings.telegram_webhook_secret
    if expected:
        given = request.headers.get(SECRET_HEADER, "")
        if not secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            log.warning("telegram webhook: wrong or missing secret token from %s",
                        request.client.host if request.client else "?")
            return JSONResponse({"detail": "wrong secret token"}, status_code=401)
    try:
        payload = _storable(json.loads(await request.body()))
    except (ValueError, UnicodeDecodeError):
        return JSONResponse({"detail": "the body is not JSON"}, status_code=400)
    if not isinstance(payload, dict) or type(payload.get("update_id")) is not int:
        return JSONResponse({"detail": "an update needs an integer update_id"}, status_code=400)
    try:
        await runtime.accept(payload)
    except STATE_DOWN as exc:
        log.warning("telegram webhook: update %s not stored, the state store is unreachable (%s)",
                    payload["update_id"], type(exc).__name__)
        return JSONResponse({"detail": "try again later"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    except Exception:
        log.exception("telegram webhook: update %s could not be stored", payload["update_id"])
        return JSONResponse({"detail": "try again later"}, status_code=503)
    return JSONResponse({"ok": True})


def _storable(value: Any) -> Any:
    """The update with lone surrogates and NUL in its strings turned into U+FFFD: Telegram gets
    its 200 and the update is kept and handled (its text then refused politely as unreadable),
    where a database refusing it would have Telegram redeliver it forever."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value
