"""Serve an ASGI app on a free 127.0.0.1 port in a background thread, as a real HTTP server.

Fakes of outside services (Telegram, WeChat) are reached by the real client libraries over
loopback, so nothing in the code under test knows it is being tested::

    with serve(app) as url:
        httpx.get(f"{url}/health")

The pattern follows encode/httpx ``tests/conftest.py`` (``serve_in_thread``): uvicorn runs its
own event loop in a thread, the caller waits until it answers, and ``stop()`` asks it to exit
and joins the thread. The app's lifespan runs, so an app can start and stop background work on
the server's loop.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import uvicorn

STARTUP_TIMEOUT = 10.0


class ServedApp:
    """One ASGI app served by uvicorn in a daemon thread; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, app: Any, *, graceful_timeout: int = 5) -> None:
        self.app = app
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
        # protocol number says TCP, and without it each answer written in two parts waits ~40 ms
        # for a delayed ACK (Nagle).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Binding here, before uvicorn starts, makes the port known at once and free of races.
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="auto",
            ws="none",
            # Requests still running after this long (a long poll, a slow answer) are cancelled
            # so that stopping never hangs a test run.
            timeout_graceful_shutdown=graceful_timeout,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]},
            name=f"serve-{self.port}", daemon=True,
        )

    def start(self) -> Self:
        """Start serving and return once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server on {self.url} stopped during startup")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on {self.url} did not start in {STARTUP_TIMEOUT} s")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Ask the server to exit, then wait for its thread; safe to call twice."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join()
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` for the duration of the block; yields its base URL."""
    with ServedApp(app) as served:
        yield served.url
