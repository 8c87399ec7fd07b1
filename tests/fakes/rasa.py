"""A Rasa server's NLU endpoint, `POST /model/parse`, answering with Rasa's documented JSON,
and the ways a real one fails.

The fake "model" recognises a few words per intent and extracts `category` and `urgent`
entities when the text carries the words in CATEGORY_WORDS and URGENT_WORDS, so tests can
see both ways the RasaClassifier fills the category and urgency heads. "井盖" gives a category
of a city's own taxonomy that the embedded model never answers, so a test can tell Rasa's
reading from the embedded model's. It records every text it was asked to parse and the token
that came with it.

    fake = FakeRasa(token="s3cret")
    with fake.serving() as url:
        RasaClassifier(url, token="s3cret").parse("你好")
        fake.fault = "hang"          # or "html_500", "truncated", "not_a_parse", "unauthorized"

A server that is down is `refused_url()`: a loopback port nothing listens on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.serving import serve

VERSION = "3.6.21"
INTENT_WORDS = [
    ("greet", ("你好", "hello")),
    ("thanks", ("谢谢", "thanks")),
    ("complaint", ("投诉", "吵", "noisy")),
    ("proposal", ("建议", "suggest")),
    ("service_request", ("坏了", "申请", "broken")),
]
CATEGORY_WORDS = {"灯": "facilities", "lamp": "facilities", "低保": "civil_affairs",
                  "井盖": "municipal_manhole_covers"}
URGENT_WORDS = ("煤气", "gas")
# How long a hanging answer waits at most for the test to let it go.
HANG_LIMIT = 30.0

Fault = Literal["html_500", "truncated", "hang", "not_a_parse", "unauthorized"]


def rasa_answer(text: str) -> dict[str, Any]:
    """What Rasa 3 answers for `text`, per https://rasa.com/docs/rasa/pages/http-api."""
    low = text.lower()
    ranking = [{"name": name, "confidence": 0.0} for name, _ in INTENT_WORDS]
    name, confidence = "nlu_fallback", 0.3
    for intent, words in INTENT_WORDS:
        if any(w in low for w in words):
            name, confidence = intent, 0.93
            break
    for entry in ranking:
        if entry["name"] == name:
            entry["confidence"] = confidence
    entities: list[dict[str, Any]] = []
    for word, category in CATEGORY_WORDS.items():
        start = low.find(word)
        if start >= 0:
            entities.append({"entity": "category", "value": category, "start": start,
                             "end": start + len(word), "confidence_entity": 0.88,
                             "extractor": "DIETClassifier"})
            break
    for word in URGENT_WORDS:
        start = low.find(word)
        if start >= 0:
            entities.append({"entity": "urgent", "value": "true", "start": start,
                             "end": start + len(word), "confidence_entity": 0.91,
                             "extractor": "DIETClassifier"})
    start = text.find("301")
    if start >= 0:
        entities.append({"entity": "room", "value": "301", "start": start, "end": start + 3,
                         "confidence_entity": 0.99, "extractor": "RegexEntityExtractor"})
    return {
        "text": text,
        "intent": {"name": name, "confidence": confidence},
        "entities": entities,
        "intent_ranking": sorted(ranking, key=lambda e: -e["confidence"]),
        "text_tokens": [[i, i + 1] for i in range(len(text))],
    }


def _failure(code: int, reason: str, message: str) -> JSONResponse:
    """Rasa's error body (rasa/server.py ErrorResponse)."""
    return JSONResponse({"version": VERSION, "status": "failure", "message": message,
                         "reason": reason, "details": {}, "help": None, "code": code},
                        status_code=code)


class FakeRasa:
    """The app and what it saw. `token`: like `rasa run --auth-token`, a parse without it
    gets 401. `fault`: how the next answers go wrong (None: they do not)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.fault: Fault | None = None
        self.texts: list[str] = []
        self.tokens: list[str | None] = []
        self.answered = 0  # parses answered in full
        self.url = ""  # while serving
        self._release = threading.Event()
        self.app = Starlette(routes=[
            Route("/", self._version, methods=["GET"]),
            Route("/model/parse", self._parse, methods=["POST"]),
        ])

    @contextmanager
    def serving(self) -> Iterator[str]:
        """Serve on loopback; hanging answers are let go before the server stops."""
        self._release.clear()
        with serve(self.app) as self.url:
            try:
                yield self.url
            finally:
                self._release.set()

    async def _version(self, request: Request) -> Response:
        return PlainTextResponse(f"Hello from Rasa: {VERSION}")

    async def _parse(self, request: Request) -> Response:
        body = await request.json()
        text = body["text"]
        self.texts.append(text)
        token = request.query_params.get("token")
        self.tokens.append(token)
        if self.fault == "unauthorized" or (self.token is not None and token != self.token):
            return _failure(401, "NotAuthenticated", "User is not authenticated.")
        if self.fault == "html_500":
            return HTMLResponse("<html><body><h1>500 Internal Server Error</h1></body></html>",
                                status_code=500)
        if self.fault == "truncated":
            whole = json.dumps(rasa_answer(text), ensure_ascii=False).encode()
            return Response(whole[: len(whole) // 2], media_type="application/json")
        if self.fault == "not_a_parse":
            return JSONResponse({"version": VERSION, "status": "ok", "text": text})
        if self.fault == "hang":
            # Longer than any client timeout; polled so that stopping the server is not held up.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + HANG_LIMIT
            while not self._release.is_set() and loop.time() < deadline:
                await asyncio.sleep(0.02)
        self.answered += 1
        return JSONResponse(rasa_answer(text))


def refused_url() -> str:
    """The URL of a Rasa that is down: a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
