"""The web app served on 127.0.0.1 over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from bot.app import Services, build_app, build_services
from bot.settings import Settings
from storage.clock import FixedClock
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp


@dataclass
class Running:
    url: str
    services: Services
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTP client (a browser with its own cookies), closed when the test ends."""
        made = httpx.Client(base_url=self.url, timeout=10, **kwargs)  # type: ignore[arg-type]
        self.clients.append(made)
        return made


def start(settings: Settings, clock: FixedClock) -> tuple[ServedApp, Services]:
    services = build_services(settings, clock=clock, classifier=KeywordClassifier())
    return ServedApp(build_app(services)).start(), services


@pytest.fixture
def web(database_url: str, clock: FixedClock) -> Iterator[Running]:
    served, services = start(
        Settings(database_url=database_url, secret_key="e2e-secret", demo=True, send_idle_seconds=0.05), clock
    )
    running = Running(served.url, services)
    yield running
    for client in running.clients:
        client.close()
    served.stop()
    services.engine.dispose()
