"""Intake throughput: N resident messages through the whole pipeline.

Web chat HTTP in (real uvicorn on 127.0.0.1), NLU, routing, case stored with its events and
notices, outbox drained by the sender. Prints messages/s and p50/p99 latency per database.

    uv run python benchmarks/intake.py                 # SQLite, and PostgreSQL if reachable
    uv run python benchmarks/intake.py --n 2000 --concurrency 16 --db sqlite

PostgreSQL uses the database `griddesk_bench` on the server of --pg-url (created when missing,
emptied before the run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.app import build_app, build_services
from bot.settings import Settings
from storage import tables as t
from storage.db import recreate_database
from storage.unit_of_work import UnitOfWork

MESSAGES = [
    "3单元楼道的灯坏了好几天了，晚上太黑",
    "小区门口的垃圾三天没人清运了，味道很大",
    "我想办理高龄补贴，需要带什么材料",
    "楼上邻居每天半夜装修噪音扰民，我要投诉",
    "电梯又停了，老人上不了楼",
    "建议在小区空地增设一些健身器材",
    "How do I apply for a residence permit?",
    "樓下的水管漏水，淹到樓道了",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_postgres(url: str) -> str:
    return recreate_database(url, "griddesk_bench")


async def run(database_url: str, n: int, concurrency: int) -> dict[str, float]:
    settings = Settings(database_url=database_url, demo=True, secret_key="bench", send_idle_seconds=0.05)
    services = build_services(settings)
    app = build_app(services)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    with UnitOfWork(services.engine) as uow:
        buildings = [b.code for b in uow.session.scalars(select(t.Building).order_by(t.Building.code))]
    clients = []
    for code in buildings:
        client = httpx.AsyncClient(base_url=base, timeout=30)
        (await client.post("/api/demo/persona", json={"who": f"building:{code}"})).raise_for_status()
        clients.append(client)

    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            client = clients[i % len(clients)]
            started = time.perf_counter()
            resp = await client.post("/api/chat/send", json={"text": MESSAGES[i % len(MESSAGES)]})
            resp.raise_for_status()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    while True:
        with UnitOfWork(services.engine) as uow:
            pending = uow.session.scalar(
                select(func.count()).select_from(t.Outbox).where(t.Outbox.state == "pending"))
        if not pending:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    with UnitOfWork(services.engine) as uow:
        cases = uow.session.scalar(select(func.count()).select_from(t.Case)) or 0
    for client in clients:
        await client.aclose()
    server.should_exit = True
    thread.join(timeout=10)
    services.engine.dispose()
    latencies.sort()
    return {
        "messages": n,
        "cases": cases,
        "seconds": elapsed,
        "per_second": n / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    targets = []
    if args.db in ("sqlite", "both"):
        targets.append("sqlite")
    if args.db in ("postgresql", "both"):
        targets.append("postgresql")
    print(f"{'database':<11} {'messages':>8} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for target in targets:
        with tempfile.TemporaryDirectory() as tmp:
            if target == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            else:
                try:
                    url = fresh_postgres(args.pg_url)
                except Exception as exc:  # noqa: BLE001 - no PostgreSQL: say so, go on
                    print(f"{'postgresql':<11} skipped: {exc.__class__.__name__}: {exc}"[:200])
                    continue
            r = asyncio.run(run(url, args.n, args.concurrency))
            print(f"{target:<11} {r['messages']:>8} {r['per_second']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}"
                  f"   ({r['cases']} cases, {r['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
