"""Intake throughput: N resident messages through the whole pipeline.

Web chat HTTP in, NLU, routing, case stored with its events and notices, outbox drained by the
sender. Prints messages/s and p50/p99 latency per database and, on PostgreSQL, beside them the
transactions/s `pgbench -b tpcb-like` gets from the same server in the same run (on a scratch
database of its own, right after the intake run) and intake's share of it.

    uv run python benchmarks/intake.py                 # in-process: SQLite, and PostgreSQL if reachable
    uv run python benchmarks/intake.py --n 2000 --concurrency 16 --db sqlite
    uv run python benchmarks/intake.py --db postgresql --processes 1,2,4
    uv run python benchmarks/intake.py --db both --statements     # SQL statements per filed case

Without --processes the web app runs in this process (uvicorn in a thread) next to the load
generator. With --processes N, N `griddesk serve` processes share the database and Redis
(--redis-url; TELEGRAM_POLL=false on all but the first) and the load generator sends its
requests to them in strict rotation, each process over its own keep-alive connections: the
round robin of a load balancer, without one in the way. After the run the first process's
/metrics must count every message of every process, and the CPU time the serve processes and
the local PostgreSQL server spent on the run is printed per message (Linux: /proc).

PostgreSQL uses the database --bench-db on the server of --pg-url (dropped and created for
every run) and pgbench the database --pgbench-db; the Redis database of --redis-url loses its
`griddesk:*` keys before every run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvicorn
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import build_app, build_services, prepare_database
from bot.channels.base import Incoming
from bot.settings import Settings
from handlers.notify import ensure_identity
from storage import db
from storage import tables as t
from storage.clock import SystemClock
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
PGBENCH = shutil.which("pgbench") or ("/usr/bin/pgbench" if Path("/usr/bin/pgbench").exists() else None)
CASE_NUMBER = re.compile(r"[A-Z]{2,4}-\d{8}-\d{4}")


@dataclass
class Result:
    messages: int
    cases: int
    seconds: float
    latencies: list[float]
    counted: int | None = None  # griddesk_messages_total as the first process's /metrics sums it
    serve_cpu: float | None = None  # CPU seconds the serve processes spent during the run
    postgres_cpu: float | None = None  # … and the PostgreSQL server's processes
    # CPU seconds this process spent in the timed part of the run: the load generator (and its
    # polls of the outbox at the end); in-process, the app's thread is counted in it too.
    generator_cpu: float | None = None

    def cpu_ms(self, seconds: float | None) -> str:
        return f"{seconds / self.messages * 1000:.1f}" if seconds is not None else "n/a"

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def buildings(engine: Engine) -> list[str]:
    with UnitOfWork(engine) as uow:
        return [b.code for b in uow.session.scalars(select(t.Building).order_by(t.Building.code))]


def pending_notices(engine: Engine) -> int:
    with UnitOfWork(engine) as uow:
        return uow.session.scalar(
            select(func.count()).select_from(t.Outbox).where(t.Outbox.state == "pending")) or 0


def count_cases(engine: Engine) -> int:
    with UnitOfWork(engine) as uow:
        return uow.session.scalar(select(func.count()).select_from(t.Case)) or 0


async def signed_in_browser(base: str, code: str) -> aiohttp.ClientSession:
    """A browser of a resident of building `code`, signed in by the demo picker: its own cookies
    and keep-alive connections; a response with an error status raises."""
    # An idle connection is dropped after 2 s, before uvicorn closes it (5 s): a request sent
    # on a connection the server is closing fails, and a browser would not do that either.
    browser = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(keepalive_timeout=2.0),
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # the session cookie of 127.0.0.1, an IP address
        timeout=aiohttp.ClientTimeout(total=60), raise_for_status=True)
    await send(browser, f"{base}/api/demo/persona", {"who": f"building:{code}"})
    return browser


async def send(browser: aiohttp.ClientSession, url: str, body: dict[str, str]) -> None:
    """POST `body` as JSON and read the whole response, which frees the connection for the next."""
    async with browser.post(url, json=body) as resp:
        await resp.read()


async def drive(bases: list[str], codes: list[str], n: int, concurrency: int, engine: Engine) -> Result:
    """`n` messages from `concurrency` clients, request i to bases[i % len(bases)]; then wait until
    the outbox is drained."""
    # One browser per building: a resident of it.
    browsers = [await signed_in_browser(bases[0], code) for code in codes]
    # Each process reads one message first, untimed: the NLU's word segmenter loads its
    # dictionary on the first message a process reads, once in its life.
    for base in bases:
        await send(browsers[0], f"{base}/api/chat/send", {"text": "你好"})
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
            browser = browsers[i % len(browsers)]
            started = time.perf_counter()
            await send(browser, f"{bases[i % len(bases)]}/api/chat/send",
                       {"text": MESSAGES[i % len(MESSAGES)]})
            latencies.append(time.perf_counter() - started)

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    while pending_notices(engine):
        await asyncio.sleep(0.05)
    elapsed, generator_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for browser in browsers:
        await browser.close()
    return Result(messages=n, cases=count_cases(engine), seconds=elapsed, latencies=latencies,
                  generator_cpu=generator_cpu)


async def run_in_process(database_url: str, n: int, concurrency: int) -> Result:
    settings = Settings(database_url=database_url, demo=True, secret_key="bench")
    services = build_services(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(services), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        return await drive([f"http://127.0.0.1:{port}"], buildings(services.engine), n, concurrency,
                           services.engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        services.engine.dispose()


def forget_state(redis_url: str) -> None:
    """The shared state of a previous run (conversations, locks) would meet the new database's ids."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match="griddesk:*", count=1000):
        client.delete(key)
    client.close()


def serve_processes(database_url: str, redis_url: str | None, count: int, metrics_dir: Path,
                    log_dir: Path) -> list[tuple[subprocess.Popen[bytes], str]]:
    started = []
    for index in range(count):
        port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "bench", "DEMO": "true",
               "LOG_LEVEL": "WARNING", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
               # Exactly one process may poll Telegram (none is configured here; as in production).
               "TELEGRAM_POLL": "true" if index == 0 else "false"}
        env.pop("METRICS_TOKEN", None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        with (log_dir / f"serve-{index}.log").open("ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                                       cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append((process, f"http://127.0.0.1:{port}"))
    deadline = time.monotonic() + 180
    for process, base in started:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"griddesk serve exited with {process.returncode}; see {log_dir}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"griddesk serve on {base} did not answer; see {log_dir}")
            time.sleep(0.2)
    return started


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds the processes have used so far (Linux /proc); None elsewhere."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if not Path("/proc/self/stat").exists():
                return None
            continue  # a process that has ended since: its time is not counted
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def postgres_pids() -> list[int]:
    """The local PostgreSQL server's processes (its connections included), when it runs here."""
    found = subprocess.run(["pgrep", "-x", "postgres"], check=False, capture_output=True, text=True) \
        if shutil.which("pgrep") else None
    return [int(p) for p in found.stdout.split()] if found else []


def messages_counted(base: str) -> int:
    from prometheus_client.parser import text_string_to_metric_families

    body = httpx.get(f"{base}/metrics", timeout=30).text
    return int(sum(s.value for family in text_string_to_metric_families(body) for s in family.samples
                   if s.name == "griddesk_messages_total"))


async def run_processes(database_url: str, redis_url: str | None, count: int, n: int, concurrency: int) -> Result:
    settings = Settings(database_url=database_url, demo=True, secret_key="bench")
    engine = db.make_engine(database_url)
    prepare_database(settings, engine, SystemClock())  # once, before several processes start
    if redis_url:
        forget_state(redis_url)
    with tempfile.TemporaryDirectory() as tmp:
        metrics_dir = Path(tmp) / "metrics"
        metrics_dir.mkdir()
        started = serve_processes(database_url, redis_url, count, metrics_dir, Path(tmp))
        serve_pids = [process.pid for process, _ in started]
        try:
            # CPU from the first request on: the processes' start (imports, migrations) is not intake.
            # PostgreSQL's connections that end during the run are not counted (the pools keep theirs).
            serve_before, pg_before = cpu_seconds(serve_pids), cpu_seconds(postgres_pids())
            result = await drive([base for _, base in started], buildings(engine), n, concurrency, engine)
            serve_after, pg_after = cpu_seconds(serve_pids), cpu_seconds(postgres_pids())
            if serve_before is not None and serve_after is not None:
                result.serve_cpu = serve_after - serve_before
            if pg_before is not None and pg_after is not None and pg_before:
                result.postgres_cpu = pg_after - pg_before
            result.counted = messages_counted(started[0][1]) - len(started)  # less the warm-ups
        finally:
            for process, _ in started:
                process.send_signal(signal.SIGTERM)
            for process, _ in started:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            engine.dispose()
    return result


# --------------------------------------------------------------------------- pgbench


def pgbench_tps(server_url: str, name: str, clients: int = 8, seconds: int = 10) -> float | None:
    """`pgbench -b tpcb-like` on a scratch database of the same server; None without pgbench."""
    if PGBENCH is None:
        return None
    scratch = make_url(recreate_database(server_url, name))
    args = ["-h", scratch.host or "127.0.0.1", "-p", str(scratch.port or 5432), "-U", scratch.username or "postgres"]
    env = {**os.environ}
    if scratch.password:
        env["PGPASSWORD"] = scratch.password
    subprocess.run([PGBENCH, *args, "-i", "-s", "1", "-q", scratch.database or name], env=env, check=True,
                   capture_output=True)
    out = subprocess.run([PGBENCH, *args, "-b", "tpcb-like", "-c", str(clients), "-T", str(seconds),
                          scratch.database or name], env=env, check=True, capture_output=True, text=True).stdout
    found = re.search(r"tps = ([\d.]+)", out)
    return float(found.group(1)) if found else None


# --------------------------------------------------------------------------- SQL statements per case


def source_of(stack: list[traceback.FrameSummary]) -> str:
    """The innermost frame of our own code below the pipeline that caused a statement."""
    ours = [f for f in stack if f.filename.startswith(str(ROOT)) and "/.venv/" not in f.filename
            and not f.filename.endswith(("benchmarks/intake.py", "storage/unit_of_work.py"))]
    if not ours:
        return "?"
    frame = ours[-1]
    return f"{Path(frame.filename).relative_to(ROOT)}:{frame.name}"


def statements_per_case(database_url: str, messages: int = 80) -> dict[str, Any]:
    """Messages that file a case, served in-process one by one; SQL statements counted per message."""
    settings = Settings(database_url=database_url, demo=True, secret_key="bench")
    services = build_services(settings)
    engine = services.engine
    filers = [m for m in MESSAGES if "建议" not in m and "How" not in m]  # a case each, no council
    with UnitOfWork(engine) as uow:
        residents = list(uow.session.scalars(select(t.Resident).order_by(t.Resident.id)))
        for resident in residents:
            ensure_identity(uow.session, "web", f"resident:{resident.id}", services.clock.now(), resident=resident)
        uow.commit()
    counting = {"on": False}
    per_message: list[int] = []
    kinds: collections.Counter[str] = collections.Counter()
    sources: collections.Counter[str] = collections.Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if counting["on"]:
            per_message[-1] += 1
            words = statement.split()
            verb = words[0].upper() if words else "?"
            table = next((w.strip('"') for prev, w in itertools.pairwise(words)
                          if prev.upper() in ("FROM", "INTO", "UPDATE")), "")
            kinds[f"{verb} {table}".strip()] += 1
            sources[source_of(traceback.extract_stack()[:-1])] += 1

    filed: list[int] = []  # statements of each message that filed a case
    seconds: list[float] = []
    # The first pass counts (looking up each statement's source is slow), the second times.
    for i in range(2 * messages):
        resident = residents[i % len(residents)]
        counting["on"] = i < messages
        per_message.append(0)
        started = time.perf_counter()
        replies = services.pipeline.handle_sync(
            Incoming(channel="web", address=f"resident:{resident.id}", text=filers[i % len(filers)]))
        elapsed = time.perf_counter() - started
        if not any(CASE_NUMBER.search(r.text) for r in replies):
            continue
        if counting["on"]:
            filed.append(per_message[-1])
        else:
            seconds.append(elapsed)
    counting["on"] = False
    del per_message[messages:]
    services.engine.dispose()
    return {"messages": messages, "filed": len(filed), "statements": sum(per_message),
            "per_case": statistics.mean(filed) if filed else 0.0,
            "ms_per_case": statistics.median(seconds) * 1000 if seconds else 0.0,
            "kinds": kinds.most_common(12), "sources": sources.most_common(12)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--processes", default="",
                        help="comma-separated numbers of `griddesk serve` processes, e.g. 1,2,4 "
                             "(default: the app in this process)")
    parser.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--bench-db", default="griddesk_bench")
    parser.add_argument("--pgbench-db", default="griddesk_pgbench")
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL"),
                        help="shared state for several processes (required for more than one)")
    parser.add_argument("--statements", action="store_true",
                        help="count SQL statements per filed case (in-process) instead")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each row this many times, pgbench after each, and print "
                             "the medians too (the host's speed drifts from minute to minute)")
    args = parser.parse_args()
    targets = [d for d in ("sqlite", "postgresql") if args.db in (d, "both")]
    counts = [int(p) for p in args.processes.split(",") if p.strip()] or [0]
    if any(c > 1 for c in counts) and not args.redis_url:
        parser.error("more than one process needs --redis-url (or TEST_REDIS_URL)")
    print(f"python {platform.python_version()} ({sys.executable}); serve processes run the same")
    print(f"{'database':<11} {'processes':>9} {'messages':>8} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'pgbench tps':>11} {'share':>6}")
    for target in targets:
        for count in counts if not args.statements else [0]:
            rounds = [measure(args, target, count) for _ in range(1 if args.statements else args.rounds)]
            if len(rounds) > 1:
                print_median(target, count, [r for r in rounds if r is not None])
    return 0


Round = tuple[float, float, float, float | None]  # messages/s, p50 ms, p99 ms, pgbench tps


def measure(args: argparse.Namespace, target: str, count: int) -> Round | None:
    """One row: intake on a new database, then pgbench on the same server; printed."""
    with tempfile.TemporaryDirectory() as tmp:
        if target == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        else:
            try:
                url = recreate_database(args.pg_url, args.bench_db)
            except Exception as exc:  # noqa: BLE001 - no PostgreSQL: say so, go on
                print(f"{'postgresql':<11} skipped: {exc.__class__.__name__}: {exc}"[:200])
                return None
        if args.statements:
            report_statements(target, url)
            return None
        if count:
            r = asyncio.run(run_processes(url, args.redis_url, count, args.n, args.concurrency))
        else:
            r = asyncio.run(run_in_process(url, args.n, args.concurrency))
    tps = pgbench_tps(args.pg_url, args.pgbench_db) if target == "postgresql" else None
    where = str(count) if count else "in-proc"
    bench = f"{tps:>11.0f} {r.per_second / tps:>6.1%}" if tps else \
        f"{'n/a' if target == 'sqlite' else 'no pgbench':>11} {'':>6}"
    print(f"{target:<11} {where:>9} {r.messages:>8} {r.per_second:>8.1f} {r.p50_ms:>8.1f}"
          f" {r.percentile(0.99):>8.1f} {bench}   ({r.cases} cases, {r.seconds:.1f} s"
          + (f", /metrics counted {r.counted}" if r.counted is not None else "")
          + f"; {cpu_note(r, in_process=not count)})", flush=True)
    return r.per_second, r.p50_ms, r.percentile(0.99), tps


def print_median(target: str, count: int, rounds: list[Round]) -> None:
    """The medians of the rounds, each figure on its own (the share of each round, not of the
    medians: intake and pgbench are compared within a round)."""
    if not rounds:
        return
    median = statistics.median
    shares = [rate / tps for rate, _, _, tps in rounds if tps]
    tps_values = [tps for *_, tps in rounds if tps]
    bench = (f"{median(tps_values):>11.0f} {median(shares):>6.1%}" if shares else f"{'':>11} {'':>6}")
    where = str(count) if count else "in-proc"
    print(f"{'median':<11} {where:>9} {'':>8} {median(r[0] for r in rounds):>8.1f}"
          f" {median(r[1] for r in rounds):>8.1f} {median(r[2] for r in rounds):>8.1f} {bench}"
          f"   (of {len(rounds)} rounds; shares {', '.join(f'{x:.1%}' for x in shares) or 'n/a'})",
          flush=True)


def cpu_note(r: Result, in_process: bool) -> str:
    if in_process:  # the app serves from a thread of this process: one figure for both
        return f"CPU ms per message: this process (app and load generator) {r.cpu_ms(r.generator_cpu)}"
    return (f"CPU ms per message: serve {r.cpu_ms(r.serve_cpu)}, PostgreSQL {r.cpu_ms(r.postgres_cpu)},"
            f" load generator {r.cpu_ms(r.generator_cpu)}")


def report_statements(target: str, url: str) -> None:
    s = statements_per_case(url)
    print(f"{target}: {s['per_case']:.1f} SQL statements and {s['ms_per_case']:.1f} ms (median) per filed "
          f"case, in this process, one message at a time ({s['filed']} of {s['messages']} messages filed one)")
    print("  (per message, averaged over all messages:)")
    print("  by statement:  " + ", ".join(f"{k} {v / s['messages']:.1f}" for k, v in s["kinds"]))
    print("  by source:     " + ", ".join(f"{k} {v / s['messages']:.1f}" for k, v in s["sources"]))


if __name__ == "__main__":
    sys.exit(main())
