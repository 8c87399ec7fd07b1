"""The Classifier port over a running Rasa server (`POST /model/parse`).

How Rasa's answer maps onto our heads:
- Rasa's intent is the kind head. The server is trained on `nlu/data/kinds.yml` (it is Rasa
  YAML), so its intents are the kinds and the small-talk intents: service_request, complaint
  and proposal are kinds; greet, thanks, help, query_status, ask_grid_worker and out_of_scope
  give kind "other" with that intent. `nlu_fallback` and any unknown intent give kind "other",
  intent "out_of_scope", at Rasa's confidence.
- Category and urgency come from Rasa's entities when the server extracts them: an entity
  `category` whose value is a category, and an entity `urgent` whose value is true/urgent/
  yes/1 (or false/not_urgent/no/0), at `confidence_entity`. Otherwise they come from the
  embedded model (`embedded`, by default the shipped model under nlu/model/).
- Entities: Rasa's, plus the embedded extractor's where they do not overlap Rasa's.
- `lang` is detected locally.

The embedded model reads every message too, and that second reading is used twice:
- When the two disagree on the kind, the Parse says so (`alternative_kind`) and its kind
  confidence drops to at most what the embedded model can give Rasa's kind. A DIET model's
  confidences are saturated (0.99 for most of its mistakes), so Rasa's own figure would almost
  never let the bot ask "a request, a complaint or a proposal?".
- When Rasa cannot answer (down, timed out, an HTTP error, anything but its parse JSON),
  `parse` answers with the embedded reading and logs a warning: a message is never lost
  because the server is away. `parse_with_rasa` raises NLUUnavailable instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, Self

import httpx

from nlu import lifeline
from nlu.errors import NLUError, NLUUnavailable
from nlu.normalise import detect_lang, normalise
from nlu.parse import KINDS, OTHER_INTENTS, Entity, Parse

log = logging.getLogger(__name__)

_TRUE = {"true", "urgent", "yes", "1"}
_FALSE = {"false", "not_urgent", "no", "0"}
_HEAD_ENTITIES = {"category", "urgent"}
# The warm-up parse: any short text does. Its own timeout is long because building the model's
# graph on the first parse is exactly what it waits for (1.97 s on Rasa 3.6 with DIET).
WARM_UP_TEXT = "你好"
WARM_UP_TIMEOUT = 60.0


class _Parses(Protocol):
    def parse(self, text: str) -> Parse: ...


class _NotAParse(Exception):
    """Rasa's JSON does not have the shape of a parse."""


class RasaClassifier:
    """Parses messages with a Rasa server's NLU, the embedded model standing in when it cannot.

        >>> clf = RasaClassifier("http://127.0.0.1:5005", timeout=2.0)  # doctest: +SKIP
        >>> clf.parse("楼上天天半夜跺脚").kind  # doctest: +SKIP
        'complaint'

    `token` is the server's `--auth-token`, sent as `?token=`. After a failure, Rasa is left
    alone for `retry_after` seconds (the embedded model reads those messages at once), so a
    hanging server costs one timeout, not one per message. Thread-safe: one instance serves
    every message of a process.
    """

    def __init__(self, url: str, timeout: float = 2.0, *, token: str | None = None,
                 embedded: _Parses | None = None,
                 gazetteer: Mapping[str, Mapping[str, str]] | None = None,
                 retry_after: float = 30.0) -> None:
        self.base_url = url.rstrip("/")
        try:
            parsed = httpx.URL(self.base_url)
        except httpx.InvalidURL as exc:
            raise NLUError(f"not a URL of a Rasa server: {url!r}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            # Found at start, rather than as a failure of every message.
            raise NLUError(f"not an http(s) URL of a Rasa server: {url!r}")
        self.url = self.base_url + "/model/parse"
        self.timeout = timeout
        self.token = token
        self._embedded = embedded
        self._gazetteer = gazetteer
        self._embedded_lock = threading.Lock()
        self._client = httpx.Client(timeout=timeout)
        # What /health and `griddesk nlu eval` tell: is Rasa answering, how often it did not.
        self._state_lock = threading.Lock()
        self.answering: bool | None = None  # None until the first attempt
        self.fallbacks = 0
        self.last_failure: str | None = None
        self.retry_after = retry_after
        self._resting_until = 0.0  # time.monotonic() before which Rasa is not asked

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def parse(self, text: str) -> Parse:
        """Rasa's reading; the embedded model's when Rasa cannot answer (a WARNING is logged)."""
        with self._state_lock:
            resting = time.monotonic() < self._resting_until
            self.fallbacks += resting
        if resting:
            return self.embedded_parse(text)
        try:
            parsed = self.parse_with_rasa(text)
        except NLUUnavailable as exc:
            self._failed(exc, fallback=True)
            # No message text in the log: the reason names the server and the failure only.
            log.warning("%s; the embedded model reads the messages for the next %g s", exc,
                        self.retry_after)
            return self.embedded_parse(text)
        self._answered()
        return parsed

    def parse_with_rasa(self, text: str) -> Parse:
        """Rasa's reading, with the heads Rasa leaves out filled by the embedded model.

        Raises NLUUnavailable when the server cannot be reached, times out, or answers with
        something other than Rasa's parse JSON.
        """
        body = self._post(text)
        try:
            return self._reading(text, body)
        except (_NotAParse, KeyError, TypeError, ValueError) as exc:
            raise NLUUnavailable(f"Rasa at {self.base_url} answered JSON that is not a Rasa parse "
                                 f"({type(exc).__name__})") from exc

    def embedded_parse(self, text: str) -> Parse:
        """The embedded model's reading (the model is loaded on first use)."""
        if self._embedded is None:
            with self._embedded_lock:
                if self._embedded is None:
                    from nlu.embedded import EmbeddedClassifier

                    self._embedded = EmbeddedClassifier(Path(__file__).resolve().parent / "model",
                                                        self._gazetteer)
        return self._embedded.parse(text)

    # ------------------------------------------------------------------ warm-up and state

    def warm_up(self) -> bool:
        """Send one parse now, so that the server builds its model's graph before a resident's
        first message rather than during it. True when Rasa answered."""
        started = time.monotonic()
        try:
            self._post(WARM_UP_TEXT, timeout=WARM_UP_TIMEOUT)
        except NLUUnavailable as exc:
            self._failed(exc, fallback=False, rest=False)
            log.warning("%s to the warm-up parse; until it answers, the embedded model reads "
                        "the messages", exc)
            return False
        self._answered()
        log.info("Rasa at %s answered the warm-up parse in %.2f s", self.base_url,
                 time.monotonic() - started)
        return True

    def start_warm_up(self) -> threading.Thread:
        """`warm_up` in a daemon thread: a start never waits for Rasa."""
        thread = threading.Thread(target=self.warm_up, name="rasa-warm-up", daemon=True)
        thread.start()
        return thread

    def ping(self) -> str:
        """Rasa's greeting with its version (`GET /`, which needs no token), for a health check;
        NLUUnavailable when the server does not answer."""
        try:
            response = self._client.get(self.base_url + "/")
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise NLUUnavailable(f"Rasa at {self.base_url} answered HTTP "
                                 f"{exc.response.status_code}") from exc
        except httpx.HTTPError as exc:
            raise NLUUnavailable(f"Rasa at {self.base_url} did not answer "
                                 f"({type(exc).__name__})") from exc
        return response.text.strip()[:100]

    def status(self) -> dict[str, Any]:
        """The server's URL, whether its last answer was a parse (None before the first
        attempt), how many messages the embedded model read instead, and the last failure."""
        with self._state_lock:
            return {"url": self.base_url, "answering": self.answering,
                    "fallbacks": self.fallbacks, "last_failure": self.last_failure}

    def _failed(self, exc: NLUUnavailable, *, fallback: bool, rest: bool = True) -> None:
        with self._state_lock:
            self.answering = False
            self.last_failure = str(exc)
            if rest:
                self._resting_until = time.monotonic() + self.retry_after
            self.fallbacks += fallback

    def _answered(self) -> None:
        with self._state_lock:
            recovered = self.answering is False
            self.answering = True
            fallbacks = self.fallbacks
        if recovered:
            log.info("Rasa at %s answers again (%d messages read by the embedded model so far)",
                     self.base_url, fallbacks)

    # ------------------------------------------------------------------ HTTP

    def _post(self, text: str, timeout: float | None = None) -> dict[str, Any]:
        """Rasa's JSON answer. The reasons given never carry the text or the token."""
        params = {"token": self.token} if self.token else None
        where = f"Rasa at {self.base_url}"
        try:
            response = self._client.post(self.url, json={"text": text}, params=params,
                                         timeout=timeout if timeout is not None else self.timeout)
            response.raise_for_status()
            body = response.json()
        except httpx.TimeoutException as exc:
            raise NLUUnavailable(f"{where} did not answer within "
                                 f"{timeout or self.timeout:g} s") from exc
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            why = ": the token is missing or wrong" if status in (401, 403) else ""
            raise NLUUnavailable(f"{where} answered HTTP {status}{why}") from exc
        except httpx.ConnectError as exc:
            raise NLUUnavailable(f"{where} could not be reached ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:  # the connection broke, or the answer was not HTTP
            raise NLUUnavailable(f"{where} broke off its answer ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise NLUUnavailable(f"{where} did not answer ({type(exc).__name__})") from exc
        except ValueError as exc:  # the body is not JSON (an HTML error page, a cut answer)
            raise NLUUnavailable(f"{where} answered something that is not JSON") from exc
        if not isinstance(body, dict):
            raise NLUUnavailable(f"{where} answered JSON that is not a Rasa parse")
        return body

    # ------------------------------------------------------------------ mapping

    def _reading(self, text: str, body: Mapping[str, Any]) -> Parse:
        intent = body.get("intent")
        if not isinstance(intent, dict) or not isinstance(intent.get("name"), str):
            raise _NotAParse("no intent")
        name = intent["name"]
        rasa_confidence = _probability(intent.get("confidence"))
        if name in KINDS and name != "other":
            kind, other_intent = name, None
        else:
            kind, other_intent = "other", name if name in OTHER_INTENTS else "out_of_scope"
        confidence = {"kind": rasa_confidence}
        if other_intent is not None:
            confidence["intent"] = rasa_confidence

        raw_entities = body.get("entities") or []
        if not isinstance(raw_entities, list):
            raise _NotAParse("entities")
        rasa_entities = [e for e in raw_entities if isinstance(e, dict)]
        heads = {str(e.get("entity")): e for e in rasa_entities if e.get("entity") in _HEAD_ENTITIES}
        category, urgent = None, None
        if "category" in heads:
            category = str(heads["category"].get("value"))
            confidence["category"] = _probability(heads["category"].get("confidence_entity"))
        if "urgent" in heads and str(heads["urgent"].get("value")).lower() in _TRUE | _FALSE:
            urgent = str(heads["urgent"].get("value")).lower() in _TRUE
            confidence["urgent"] = _probability(heads["urgent"].get("confidence_entity"))

        entities = [ent for raw in rasa_entities if raw.get("entity") not in _HEAD_ENTITIES
                    if (ent := _entity(text, raw)) is not None]
        embedded = self.embedded_parse(text)
        if category is None:
            category = embedded.category
            confidence["category"] = embedded.confidence.get("category", 0.0)
        if urgent is None:
            urgent = embedded.urgent
            confidence["urgent"] = embedded.confidence.get("urgent", 0.0)
        else:
            # Rasa's own urgent entity, held to the life-risk lexicon like the embedded head:
            # a danger named is urgent, one negated or over is not (nlu/lifeline.py).
            urgent, confidence["urgent"] = lifeline.decide(
                lifeline.scan(normalise(text)), confidence["urgent"] if urgent else 0.0)
        for ent in embedded.entities:
            if not any(ent.start < r.end and r.start < ent.end for r in entities):
                entities.append(ent)
        entities.sort(key=lambda e: (e.start, e.end))

        alternative_kind = None
        if embedded.kind != kind:
            # The embedded model put its probability p on another kind, so it gives Rasa's kind
            # at most min(p, 1 - p) <= 0.5: the reading is unsure, and below CLARIFY_BELOW
            # (0.6 by default) the bot asks instead of acting on it.
            p = embedded.confidence.get("kind", 0.0)
            confidence["kind"] = round(min(rasa_confidence, p, 1.0 - p), 4)
            alternative_kind = embedded.kind
        return Parse(text=text, kind=kind, intent=other_intent, category=category, urgent=urgent,
                     lang=detect_lang(text), confidence=confidence, entities=tuple(entities),
                     alternative_kind=alternative_kind)


def _probability(value: Any) -> float:
    """A confidence from Rasa's JSON: a number in [0, 1] (absent: 0)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _NotAParse("confidence")
    return min(max(float(value), 0.0), 1.0)


def _entity(text: str, raw: Mapping[str, Any]) -> Entity | None:
    try:
        start, end = int(raw["start"]), int(raw["end"])
        return Entity(str(raw["entity"]), str(raw.get("value", text[start:end])),
                      text[start:end], start, end)
    except (KeyError, TypeError, ValueError):
        return None
