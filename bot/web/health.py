"""/health: the state of the database (and Redis when configured); 503 when one is down."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from bot.web.deps import Services
from storage.db import ping

router = APIRouter()


def _check(fn: Any) -> str:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - any failure means the dependency is down
        return f"down: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@router.get("/health")
async def health(services: Services) -> JSONResponse:
    report = {"database": await anyio.to_thread.run_sync(_check, lambda: ping(services.engine))}
    if services.settings.redis_url:
        report["redis"] = await anyio.to_thread.run_sync(_check, services.state.ping)
    healthy = all(v == "ok" for v in report.values())
    return JSONResponse({"status": "ok" if healthy else "degraded", **report}, status_code=200 if healthy else 503)
