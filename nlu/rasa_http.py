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
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, Self

import httpx

from nlu.errors import NLUUnavailable
from nlu.normalise import detect_lang
from nlu.parse import KINDS, OTHER_INTENTS, Entity, Parse

_TRUE = {"true", "urgent", "yes", "1"}
_FALSE = {"false", "not_urgent", "no", "0"}
_HEAD_ENTITIES = {"category", "urgent"}


class _Parses(Protocol):
    def parse(self, text: str) -> Parse: ...


class RasaClassifier:
    """Parses messages with a Rasa server's NLU.

        >>> clf = RasaClassifier("http://127.0.0.1:5005", timeout=2.0)  # doctest: +SKIP
        >>> clf.parse("楼上天天半夜跺脚").kind  # doctest: +SKIP
        'complaint'

    Raises NLUUnavailable when the server cannot be reached, times out, or answers with
    something other than Rasa's parse JSON.
    """

    def __init__(self, url: str, timeout: float = 2.0, *, token: str | None = None,
                 embedded: _Parses | None = None,
                 gazetteer: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.url = url.rstrip("/") + "/model/parse"
        self.timeout = timeout
        self.token = token
        self._embedded = embedded
        self._gazetteer = gazetteer
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _embedded_parse(self, text: str) -> Parse:
        if self._embedded is None:
            from nlu.embedded import EmbeddedClassifier

            self._embedded = EmbeddedClassifier(Path(__file__).resolve().parent / "model",
                                                self._gazetteer)
        return self._embedded.parse(text)

    def _post(self, text: str) -> dict[str, Any]:
        params = {"token": self.token} if self.token else None
        try:
            response = self._client.post(self.url, json={"text": text}, params=params)
            response.raise_for_status()
            body = response.json()
        except httpx.HTTPError as exc:
            raise NLUUnavailable(f"Rasa at {self.url} did not answer: {exc!r}") from exc
        except ValueError as exc:
            raise NLUUnavailable(f"Rasa at {self.url} answered with something not JSON") from exc
        if not isinstance(body, dict) or not isinstance(body.get("intent"), dict):
            raise NLUUnavailable(f"Rasa at {self.url} answered without an intent: {body!r:.200}")
        return body

    def parse(self, text: str) -> Parse:
        body = self._post(text)
        intent = body["intent"]
        name = str(intent.get("name") or "")
        rasa_confidence = float(intent.get("confidence") or 0.0)
        if name in KINDS and name != "other":
            kind, other_intent = name, None
        else:
            kind, other_intent = "other", name if name in OTHER_INTENTS else "out_of_scope"
        confidence = {"kind": rasa_confidence}
        if other_intent is not None:
            confidence["intent"] = rasa_confidence

        rasa_entities = [e for e in body.get("entities") or [] if isinstance(e, dict)]
        heads = {str(e.get("entity")): e for e in rasa_entities if e.get("entity") in _HEAD_ENTITIES}
        category, urgent = None, None
        if "category" in heads:
            category = str(heads["category"].get("value"))
            confidence["category"] = float(heads["category"].get("confidence_entity") or 0.0)
        if "urgent" in heads and str(heads["urgent"].get("value")).lower() in _TRUE | _FALSE:
            urgent = str(heads["urgent"].get("value")).lower() in _TRUE
            confidence["urgent"] = float(heads["urgent"].get("confidence_entity") or 0.0)

        entities = [ent for raw in rasa_entities if raw.get("entity") not in _HEAD_ENTITIES
                    if (ent := _entity(text, raw)) is not None]
        embedded = self._embedded_parse(text)
        if category is None:
            category = embedded.category
            confidence["category"] = embedded.confidence.get("category", 0.0)
        if urgent is None:
            urgent = embedded.urgent
            confidence["urgent"] = embedded.confidence.get("urgent", 0.0)
        for ent in embedded.entities:
            if not any(ent.start < r.end and r.start < ent.end for r in entities):
                entities.append(ent)
        entities.sort(key=lambda e: (e.start, e.end))
        return Parse(text=text, kind=kind, intent=other_intent, category=category, urgent=urgent,
                     lang=detect_lang(text), confidence=confidence, entities=tuple(entities))


def _entity(text: str, raw: Mapping[str, Any]) -> Entity | None:
    try:
        start, end = int(raw["start"]), int(raw["end"])
        return Entity(str(raw["entity"]), str(raw.get("value", text[start:end])),
                      text[start:end], start, end)
    except (KeyError, TypeError, ValueError):
        return None
