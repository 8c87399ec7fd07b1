"""The embedded classifier: a trained model directory, in process, no network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nlu import lifeline, model_files
from nlu.classifier import softmax
from nlu.entities import EntityExtractor
from nlu.normalise import Reading, encodable, read
from nlu.parse import KINDS, OTHER_INTENTS, Entity, Parse

# Entities are looked for in this many characters; classification truncates earlier
# (normalise.MAX_CHARS).
ENTITY_MAX_CHARS = 10_000
# The confidence reported for input with no known feature at all (emoji, noise).
NO_FEATURE_CONFIDENCE = 0.1


class EmbeddedClassifier:
    """Parses messages with the model files in `model_dir`.

        >>> clf = EmbeddedClassifier("nlu/model")  # doctest: +SKIP
        >>> clf.parse("楼道灯坏了").category  # doctest: +SKIP
        'facilities'
    """

    def __init__(self, model_dir: str | Path,
                 gazetteer: Mapping[str, Mapping[str, str]] | None = None) -> None:
        model = model_files.read(model_dir)
        self.manifest = model.manifest
        self.vectoriser = model.vectoriser
        self.entities = EntityExtractor(model.entities.get("regexes", {}),
                                        model.entities.get("synonyms", {}),
                                        model.entities.get("lookups", {}), gazetteer)
        # One weight matrix for all heads: one gather and one product per message.
        self._heads = []
        coefs, intercepts, start = [], [], 0
        for name in model_files.HEADS:
            head = model.heads[name]
            n = len(head.classes_)
            self._heads.append((name, head.classes_, head.temperature_, slice(start, start + n)))
            coefs.append(head.coef_)
            intercepts.append(head.intercept_)
            start += n
        self._coef = np.ascontiguousarray(np.hstack(coefs), dtype=np.float32)
        self._intercept = np.concatenate(intercepts)
        self.categories = tuple(model.heads["category"].classes_)
        self.vectoriser.transform_one("社区")  # loads jieba's dictionary now, not on first message

    def probabilities(self, normalised: str) -> dict[str, dict[str, float]] | None:
        """Each head's label probabilities for one normalised message (`nlu.normalise`), or
        None if no feature is known."""
        indices, values = self.vectoriser.transform_one(normalised)
        if not len(indices):
            return None
        # In float32, the weights' own precision, as `parse_many` computes it.
        scores = values.astype(np.float32) @ self._coef[indices]
        return self._head_probabilities((scores + self._intercept)[None, :])[0]

    def _head_probabilities(self, scores: np.ndarray) -> list[dict[str, dict[str, float]]]:
        """Each message's label probabilities per head, from its row of `scores`.

        One softmax per head for the whole batch: per message, numpy's call overhead would
        cost more than the arithmetic.
        """
        heads = [(name, labels, softmax(scores[:, cols], temperature).tolist())
                 for name, labels, temperature, cols in self._heads]
        return [{name: dict(zip(labels, probs[row])) for name, labels, probs in heads}
                for row in range(len(scores))]

    def parse(self, text: str) -> Parse:
        text = encodable(text)
        reading = read(text, ENTITY_MAX_CHARS)
        return self._parse(text, reading, self.probabilities(reading.normalised))

    def parse_many(self, texts: Sequence[str]) -> list[Parse]:
        """`parse` for many messages, featurised as one sparse matrix and scored by one product."""
        texts = [encodable(t) for t in texts]
        if not texts:
            return []
        readings = [read(t, ENTITY_MAX_CHARS) for t in texts]
        X = self.vectoriser.transform([r.normalised for r in readings])
        scores = np.asarray(X.astype(np.float32) @ self._coef) + self._intercept
        empty = np.diff(X.indptr) == 0
        return [self._parse(text, reading, None if empty[i] else probs)
                for i, (text, reading, probs)
                in enumerate(zip(texts, readings, self._head_probabilities(scores)))]

    def _parse(self, text: str, reading: Reading,
               probs: dict[str, dict[str, float]] | None) -> Parse:
        lang = reading.lang
        entities: tuple[Entity, ...] = self.entities.extract(text[:ENTITY_MAX_CHARS],
                                                             reading.folded)
        if probs is None:
            # No known feature (emoji, noise); a distress sign such as 🆘 still alerts.
            urgent, urgent_confidence = lifeline.decide(lifeline.scan(reading.normalised), 0.0)
            return Parse(text=text, kind="other", intent="out_of_scope",
                         category="other" if "other" in self.categories else self.categories[0],
                         urgent=urgent, lang=lang,
                         confidence={"kind": NO_FEATURE_CONFIDENCE, "intent": NO_FEATURE_CONFIDENCE,
                                     "category": NO_FEATURE_CONFIDENCE, "urgent": urgent_confidence},
                         entities=entities)
        return assemble(text, lang, probs, entities, lifeline.scan(reading.normalised))


def assemble(text: str, lang: str, probs: Mapping[str, Mapping[str, float]],
             entities: tuple[Entity, ...], risk: lifeline.Risk = lifeline.NO_RISK) -> Parse:
    """A Parse from per-head label probabilities and the life-risk lexicon's scan.

    The kind head's labels are the three kinds and the small-talk intents; the probability of
    kind "other" is the sum of the small-talk intents' probabilities. Urgency is the urgent
    head's probability combined with the lexicon (`lifeline.decide`).
    """
    kind_probs = {k: 0.0 for k in KINDS}
    intent_probs: dict[str, float] = {}
    for label, p in probs["kind"].items():
        if label in OTHER_INTENTS:
            kind_probs["other"] += p
            intent_probs[label] = p
        else:
            kind_probs[label] = kind_probs.get(label, 0.0) + p
    kind = max(kind_probs, key=lambda k: kind_probs[k])
    confidence = {"kind": round(kind_probs[kind], 4)}
    intent = None
    if kind == "other":
        intent = max(intent_probs, key=lambda k: intent_probs[k]) if intent_probs else "out_of_scope"
        confidence["intent"] = round(intent_probs.get(intent, 0.0), 4)
    category = max(probs["category"], key=lambda k: probs["category"][k])
    confidence["category"] = round(probs["category"][category], 4)
    urgent, urgent_confidence = lifeline.decide(risk, probs["urgent"].get("urgent", 0.0))
    confidence["urgent"] = round(urgent_confidence, 4)
    return Parse(text=text, kind=kind, intent=intent, category=category, urgent=urgent,
                 lang=lang, confidence=confidence, entities=entities)
