"""/health: the database, Redis when configured, and each configured channel; 503 when one is down.

    {"status": "ok" | "degraded", "database": "ok", "redis": "ok",
     "channels": {"web": {...}, "telegram": {...}, "wechat": {...}},
     "nlu": {"backend": "rasa", "url", "answering", "fallbacks", "last_failure"}}   (rasa only)

Each channel reads `{"running", "last_ok_at", "failing_since", "backlog", "dead", "down",
"sending": {...}}`, and Telegram adds `"receiving": {"mode", ...}` (getUpdates when polling,
setWebhook in webhook mode). `running`: every loop of the channel runs in this process;
`last_ok_at`: the latest successful call to the platform by any of them; `backlog` and `dead`:
pending and dead notices in the outbox (null when the database does not answer).

A channel is down, and /health answers 503, when one of its loops (the outbox sender, the
Telegram runtime) has ended without being asked to stop, or when every call of one of them has
failed for at least DOWN_AFTER and one failed within the last DOWN_AFTER. A loop not started
(a process that runs no background work) and a channel with nothing to do are not down.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from bot.channels.base import CallRecord, LoopState
from bot.sender import outbox_counts
from bot.web.deps import Services
from storage.db import ping

router = APIRouter()

DOWN_AFTER = dt.timedelta(minutes=5)


def _check(fn: Any) -> str:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - any failure means the dependency is down
        return f"down: {type(exc).__name__}: {exc}"[:300]
    return "ok"


def _counts(services: Any) -> dict[str, dict[str, int]] | None:
    try:
        return outbox_counts(services.engine)
    except Exception:  # noqa: BLE001 - the database being down is reported under "database"
        return None


def _part(loop: LoopState, calls: CallRecord, now: dt.datetime) -> dict[str, Any]:
    return {"running": loop.running, **calls.report(),
            "down": loop.died or calls.down(now, DOWN_AFTER)}


def channels(services: Any, counts: dict[str, dict[str, int]] | None) -> dict[str, dict[str, Any]]:
    now = services.clock.now()
    sender = services.sender
    report: dict[str, dict[str, Any]] = {}
    for name in services.senders:
        calls = sender.calls.get(name) or CallRecord(f"outbox → {name}")  # a sender added later
        loops: dict[str, tuple[LoopState, CallRecord]] = {"sending": (sender.loop, calls)}
        runtime = services.telegram if name == "telegram" else None
        if runtime is not None:
            loops["receiving"] = (runtime.loop, runtime.receiving)
        parts = {key: _part(loop, calls, now) for key, (loop, calls) in loops.items()}
        if runtime is not None:
            parts["receiving"] = {"mode": runtime.mode, **parts["receiving"]}
        oks = [calls.last_ok_at for _, calls in loops.values() if calls.last_ok_at is not None]
        failing = [calls.failing_since for _, calls in loops.values() if calls.failing_since is not None]
        mine = (counts or {}).get(name, {"backlog": 0, "dead": 0})
        report[name] = {
            "running": all(loop.running for loop, _ in loops.values()),
            "last_ok_at": max(oks).isoformat() if oks else None,
            "failing_since": min(failing).isoformat() if failing else None,
            "backlog": mine["backlog"] if counts is not None else None,
            "dead": mine["dead"] if counts is not None else None,
            "down": any(p["down"] for p in parts.values()),
            **parts,
        }
    return report


@router.get("/health")
async def health(services: Services) -> JSONResponse:
    report: dict[str, Any] = {"database": await anyio.to_thread.run_sync(_check, lambda: ping(services.engine))}
    if services.settings.redis_url:
        report["redis"] = await anyio.to_thread.run_sync(_check, services.state.ping)
    counts = await anyio.to_thread.run_sync(_counts, services) if report["database"] == "ok" else None
    listed = channels(services, counts)
    healthy = all(v == "ok" for v in report.values()) and not any(c["down"] for c in listed.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "degraded", **report, "channels": listed}
    rasa_status = getattr(services.classifier, "status", None)
    if callable(rasa_status):
        # Shown, never a 503: while Rasa is away the embedded model reads every message.
        body["nlu"] = {"backend": "rasa", **rasa_status()}
    return JSONResponse(body, status_code=200 if healthy else 503)
