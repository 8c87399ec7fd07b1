"""The value an NLU backend returns for one message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("service_request", "complaint", "proposal", "other")
OTHER_INTENTS = ("greet", "thanks", "help", "query_status", "ask_grid_worker", "out_of_scope")
CATEGORIES = (
    "civil_affairs",
    "social_security",
    "health",
    "residence",
    "sanitation",
    "facilities",
    "property",
    "safety",
    "neighbor",
    "culture",
    "other",
)
LANGS = ("zh-Hans", "zh-Hant", "en")


@dataclass(frozen=True)
class Entity:
    """One span of the message with a meaning: building, unit, room, phone, case_number, datetime."""

    type: str
    value: str
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Parse:
    """What one message means.

    `kind` is one of KINDS; `intent` is set only when kind is "other" (one of OTHER_INTENTS);
    `category` is one of the category head's labels; `confidence` maps each head
    ("kind", "intent", "category", "urgent") to the probability of its answer.
    `alternative_kind` is set when a second reader disagrees on the kind (the Rasa backend
    checks Rasa's kind against the embedded model's): it holds the second reader's kind.
    """

    text: str
    kind: str
    category: str
    urgent: bool
    lang: str
    intent: str | None = None
    confidence: Mapping[str, float] = field(default_factory=dict)
    entities: tuple[Entity, ...] = ()
    alternative_kind: str | None = None

    def entity(self, type_: str) -> str | None:
        """The value of the first entity of this type, or None."""
        for ent in self.entities:
            if ent.type == type_:
                return ent.value
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "kind": self.kind,
            "intent": self.intent,
            "category": self.category,
            "urgent": self.urgent,
            "confidence": dict(self.confidence),
            "entities": [
                {"type": e.type, "value": e.value, "text": e.text, "start": e.start, "end": e.end}
                for e in self.entities
            ],
            "lang": self.lang,
            "alternative_kind": self.alternative_kind,
        }
