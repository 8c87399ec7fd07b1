"""`GET /metrics`: Prometheus text format, for every serve and worker process at once.

With METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>` (401 otherwise,
compared in constant time). Without it /metrics is open, in production too, like /health:
operators restrict it by network, and nothing in it is personal (channel names and case kinds
are the only labels).

The counters and histograms come from the multiprocess directory (bot/metrics.py) when there
is one, else from this process; the database facts are read here, at scrape time, in two
indexed queries: the outbox's pending and dead notices per channel and the oldest overdue
action of the deadline watch. When the database does not answer they are left out and the rest
is served: /health is where an outage shows.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot import metrics
from bot.sender import outbox_counts
from bot.web.deps import Services
from bot.worker import scheduler_lag

log = logging.getLogger(__name__)
router = APIRouter()


class DatabaseFacts:
    """Collects what the shared database knows, once per scrape."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        try:
            counts = outbox_counts(self.services.engine)
            lag = scheduler_lag(self.services.engine, self.services.clock.now())
        except Exception as exc:  # noqa: BLE001 - the database is down: the process's metrics still count
            log.warning("/metrics: the database facts are left out (%s)", type(exc).__name__)
            return
        pending = GaugeMetricFamily("griddesk_outbox_pending", "Notices waiting to be sent, by channel.",
                                    labels=["channel"])
        dead = CounterMetricFamily("griddesk_notices_dead", "Notices given up after SEND_MAX_ATTEMPTS "
                                   "failed sends, by channel.", labels=["channel"])
        for channel in sorted(set(counts) | set(self.services.senders)):
            mine = counts.get(channel, {"backlog": 0, "dead": 0})
            pending.add_metric([channel], mine["backlog"])
            dead.add_metric([channel], mine["dead"])
        yield pending
        yield dead
        yield GaugeMetricFamily("griddesk_scheduler_lag_seconds", "How long the oldest due action of the "
                                "deadline watch has been due (0 when nothing is due).", value=lag)


class _ThisProcess:
    """The default registry's metrics, when no multiprocess directory is in use."""

    def collect(self) -> Iterator[Metric]:
        return iter(REGISTRY.collect())


def exposition(services: Any) -> bytes:
    metrics.instruments()  # declared, so a fresh process shows its zeroes
    metrics.refresh_channels(services)
    registry = CollectorRegistry()
    if os.environ.get(metrics.MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseFacts(services))
    return generate_latest(registry)


def _authorised(request: Request, token: str | None) -> bool:
    if not token:
        return True
    sent = request.headers.get("authorization", "")
    scheme, _, value = sent.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


@router.get("/metrics", include_in_schema=False)
async def get_metrics(request: Request, services: Services) -> Response:
    if not _authorised(request, services.settings.metrics_token):
        return Response("a bearer token is required\n", status_code=401, media_type="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body = await anyio.to_thread.run_sync(exposition, services)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
