"""A Rasa server's NLU endpoint, `POST /model/parse`, answering with Rasa's documented JSON.

The fake "model" recognises a few words per intent and extracts `category` and `urgent`
entities when the text carries the words in CATEGORY_WORDS and URGENT_WORDS, so tests can
see both ways the RasaClassifier fills the category and urgency heads. It records every
text it was asked to parse.

    fake = FakeRasa()
    with serve(fake.app) as url:
        RasaClassifier(url).parse("你好")
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

INTENT_WORDS = [
    ("greet", ("你好", "hello")),
    ("thanks", ("谢谢", "thanks")),
    ("complaint", ("投诉", "吵", "noisy")),
    ("proposal", ("建议", "suggest")),
    ("service_request", ("坏了", "申请", "broken")),
]
CATEGORY_WORDS = {"灯": "facilities", "lamp": "facilities", "低保": "civil_affairs"}
URGENT_WORDS = ("煤气", "gas")


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


class FakeRasa:
    """The app and what it saw; set `broken` to answer 500, `garbage` to answer non-JSON."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.tokens: list[str | None] = []
        self.broken = False
        self.garbage = False
        self.app = Starlette(routes=[
            Route("/", self._version, methods=["GET"]),
            Route("/model/parse", self._parse, methods=["POST"]),
        ])

    async def _version(self, request: Request) -> Response:
        return PlainTextResponse("Hello from Rasa: 3.6.20")

    async def _parse(self, request: Request) -> Response:
        body = await request.json()
        self.texts.append(body["text"])
        self.tokens.append(request.query_params.get("token"))
        if self.broken:
            return JSONResponse({"version": "3.6.20", "status": "failure", "code": 500,
                                 "reason": "ParsingError"}, status_code=500)
        if self.garbage:
            return PlainTextResponse("<html>gateway</html>")
        return JSONResponse(rasa_answer(body["text"]))
