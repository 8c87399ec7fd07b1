"""Shared fixtures: databases (SQLite always, PostgreSQL when TEST_DATABASE_URL is set), Redis
(when TEST_REDIS_URL is set), the example community, a simulated clock, and a chat driver.

A backend whose URL is absent is skipped with a sentence; one whose URL is set but unreachable
fails the run.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from storage import db
from storage.clock import FixedClock

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "example-community.yaml"
# A Monday in working hours (Asia/Shanghai 10:00): 2026-11-23 02:00 UTC.
MONDAY_10AM = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)

ENV_PREFIXES = ("DATABASE_URL", "REDIS_URL", "TELEGRAM_", "WECHAT_", "WECOM_", "SECRET_KEY", "ENVIRONMENT",
                "REGISTRY_FILE", "DEMO", "NLU_", "RASA_", "PUBLIC_URL", "CLARIFY_BELOW", "SEND_",
                "LOG_", "METRICS_")


def _a_database_per_worker() -> None:
    """Under pytest-xdist (`-n`), each worker process gets a PostgreSQL database of its own next
    to TEST_DATABASE_URL's, since the tests empty and migrate the one they use, and a Redis
    database of its own. Everything that reads them afterwards, subprocesses included, gets the
    worker's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = os.environ.get("TEST_DATABASE_URL")
    if worker and url:
        os.environ["TEST_DATABASE_URL"] = db.recreate_database(url, f"{url.rsplit('/', 1)[1]}_{worker}")
    # Redis likewise: worker gwN uses database N + 1, so no two tests share a key at once.
    redis_url = os.environ.get("TEST_REDIS_URL")
    if worker and redis_url and worker.removeprefix("gw").isdigit():
        os.environ["TEST_REDIS_URL"] = f"{redis_url.rsplit('/', 1)[0]}/{int(worker.removeprefix('gw')) + 1}"


_a_database_per_worker()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith(ENV_PREFIXES):
            monkeypatch.delenv(key, raising=False)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for var, what in (("TEST_DATABASE_URL", "PostgreSQL"), ("TEST_REDIS_URL", "Redis")):
        if os.environ.get(var):
            lines.append(f"{what}: {os.environ[var]}")
        else:
            lines.append(f"{what}: {var} is not set, so the {what} variants of the tests are skipped")
    return lines


# --------------------------------------------------------------------------- databases

_SQLITE_TEMPLATE: dict[str, Path] = {}


def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "path" not in _SQLITE_TEMPLATE:
        path = tmp_path_factory.mktemp("template") / "template.db"
        db.upgrade(f"sqlite:///{path}")
        _SQLITE_TEMPLATE["path"] = path
    return _SQLITE_TEMPLATE["path"]


_PG_READY: set[str] = set()


def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set: the PostgreSQL variant is skipped")
    return url


def reset_postgres(url: str) -> None:
    """A clean, migrated PostgreSQL database: migrate once per run, then empty every table."""
    if url not in _PG_READY:
        engine = db.make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        db.upgrade(url)
        _PG_READY.add(url)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        names = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"))]
        if names:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "griddesk.db"
        shutil.copy(_sqlite_template(tmp_path_factory), path)
        return f"sqlite:///{path}"
    url = postgres_url()
    reset_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path / "griddesk.db"
    shutil.copy(_sqlite_template(tmp_path_factory), path)
    return f"sqlite:///{path}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(MONDAY_10AM)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set: the Redis variant is skipped")
    return url


@pytest.fixture
def redis_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"
