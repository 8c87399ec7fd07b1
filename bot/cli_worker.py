"""`griddesk worker`: the deadline watch and the outbox sender, without the web app.

    griddesk worker                 run until SIGTERM / Ctrl-C (any number of workers may run)
    griddesk worker --once          one scheduler pass, then send what is due, then exit (cron)
    griddesk worker --once --at 2026-10-10T08:30+08:00
                                    the same at a simulated time (drills, tests)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import signal
from typing import Any

from bot.settings import Settings


def _worker(args: argparse.Namespace) -> int:
    from bot import metrics
    from bot.app import build_services
    from bot.worker import NoClassifier, scheduler_of
    from storage.clock import Clock, FixedClock, SystemClock

    clock: Clock = FixedClock(args.at) if args.at is not None else SystemClock()
    settings = Settings()
    metrics.use_multiprocess_dir(settings.database_url)  # before any metric: every process counted
    services = build_services(settings, clock=clock, classifier=NoClassifier())
    try:
        if args.once:
            report = scheduler_of(services.background).tick()
            sent = asyncio.run(services.sender.drain())
            print(f"planned {report.planned}, due {report.due}, done {report.done}, skipped {report.skipped}, "
                  f"failed {report.failed}, digests {report.digests}, notices sent {sent}")
            return 1 if report.failed else 0
        asyncio.run(_run_until_signalled(services))
        return 0
    finally:
        services.engine.dispose()
        metrics.process_exiting()


async def _run_until_signalled(services: Any) -> None:
    from bot.worker import run_all

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await run_all([services.sender.run, *services.background], stop)


def _moment(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-10-10T08:30+08:00")
    return moment


def register(subparsers: Any) -> None:
    worker = subparsers.add_parser("worker", help="run the deadline watch and the outbox sender")
    worker.add_argument("--once", action="store_true", help="one pass, send what is due, exit")
    worker.add_argument("--at", type=_moment, default=None,
                        help="simulated current time (ISO 8601 with offset), for drills and tests")
    worker.set_defaults(func=_worker)
