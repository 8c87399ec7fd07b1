"""`griddesk serve` keeps signed query strings and link tokens out of its log: what a reader of
the log could replay or open. The real command runs in a subprocess and its output is read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.web.access_log import redact

SECRETS = {
    "/wechat": {"signature": "5f3c0ffee5ignature", "timestamp": "1764000000", "nonce": "918273645",
                "openid": "oSecretOpenid0123456789abcd", "echostr": "echo-me-back-42"},
    "/telegram/webhook": {"token": "tg-query-secret"},
    "/login/SIGNEDLOGINTOKEN.abc": {"next": "login-query-secret"},
    "/photos/SIGNEDPHOTOSTOKEN.xyz/7": {"v": "photos-query-secret"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow  # starts the real `griddesk serve`
def test_served_requests_are_logged_without_their_secrets(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "DATABASE_URL", "REDIS_URL"))}
    env |= {"DATABASE_URL": sqlite_url, "SECRET_KEY": "log-test", "WECHAT_TOKEN": "griddesk-test-token",
            "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parents[2])
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=1, trust_env=False)
                    break
                except httpx.HTTPError:
                    assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.2)
            with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
                client.get("/wechat", params=SECRETS["/wechat"])
                client.post("/wechat", params=SECRETS["/wechat"], content=b"<xml></xml>")
                for path in ("/telegram/webhook", "/login/SIGNEDLOGINTOKEN.abc", "/photos/SIGNEDPHOTOSTOKEN.xyz/7"):
                    client.request("POST" if "telegram" in path else "GET", path, params=SECRETS[path])
                client.get("/health", params={"probe": "kept"})
        finally:
            server.terminate()
            server.wait(timeout=20)
    logged = log_path.read_text(encoding="utf-8")
    assert '"GET /wechat HTTP/1.1" 403' in logged and '"POST /wechat HTTP/1.1" 403' in logged, logged
    assert '"GET /login/[token] HTTP/1.1"' in logged and '"GET /photos/[token]/7 HTTP/1.1"' in logged
    assert '"POST /telegram/webhook HTTP/1.1"' in logged
    for query in SECRETS.values():
        for value in query.values():
            assert value not in logged
    assert "SIGNEDLOGINTOKEN" not in logged and "SIGNEDPHOTOSTOKEN" not in logged
    assert "/health?probe=kept" in logged  # other paths are logged as they were


def test_redact_keeps_other_paths_whole() -> None:
    assert redact("/wechat?signature=x&nonce=y") == "/wechat"
    assert redact("/wechat/?a=1") == "/wechat/"
    assert redact("/login/abc.def?x=1") == "/login/[token]"
    assert redact("/photos/abc/12") == "/photos/[token]/12"
    assert redact("/api/figures?by=grid") == "/api/figures?by=grid"
    assert redact("/wechatx?a=1") == "/wechatx?a=1"
