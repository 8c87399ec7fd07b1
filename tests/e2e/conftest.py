"""The web app served on 127.0.0.1 over real HTTP."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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


# --------------------------------------------------------------------------- a real browser

# Debian's chromium (browsers cannot be downloaded here), started as the machine allows: no
# sandbox as root, and none of the background connections a closed network refuses.
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _fonts_with_cjk(folder: Path) -> dict[str, str]:
    """A fontconfig setup that adds the CJK font the project ships (the noto-cjk-sans-otc
    package, also used for grid signs) to the system's, so the screenshot shows the Chinese
    on a machine without CJK fonts of its own."""
    import noto_cjk_sans_otc  # type: ignore[import-untyped]

    conf = folder / "fonts.conf"
    conf.write_text(f"""<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig><include ignore_missing="yes">/etc/fonts/fonts.conf</include>
<dir>{Path(noto_cjk_sans_otc.__file__).parent}</dir><cachedir>{folder / "cache"}</cachedir></fontconfig>
""", encoding="utf-8")
    return {"FONTCONFIG_FILE": str(conf)}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    env = {**os.environ, **_fonts_with_cjk(tmp_path_factory.mktemp("fonts"))}
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, env=env)
        yield launched
        launched.close()
