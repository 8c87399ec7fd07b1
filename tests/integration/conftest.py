"""Services over a real database with the example community loaded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.app import Services, build_services
from bot.settings import Settings
from storage.clock import FixedClock
from storage.state import MemoryStateStore
from tests.chat import Chat
from tests.fakes.classifier import KeywordClassifier


@pytest.fixture
def services(database_url: str, clock: FixedClock) -> Iterator[Services]:
    settings = Settings(database_url=database_url, secret_key="test-secret", demo=True)
    built = build_services(settings, clock=clock, classifier=KeywordClassifier(), state=MemoryStateStore())
    yield built
    built.engine.dispose()


@pytest.fixture
def chat(services: Services) -> Chat:
    return Chat(services)
