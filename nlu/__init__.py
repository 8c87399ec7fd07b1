"""Text in, Parse out: what a resident's message means.

    >>> import nlu
    >>> p = nlu.parse("3栋2单元楼道灯坏了三天了")  # doctest: +SKIP
    >>> p.kind, p.category, p.urgent, p.entity("building")  # doctest: +SKIP
    ('service_request', 'facilities', False, '3')

`load()` gives a Classifier for a model directory (the shipped model by default) with the
registry's buildings and grids as a gazetteer; `RasaClassifier` is the same port over a Rasa
server, the embedded model reading a message when the server cannot. Definitions, data format
and figures: nlu/README.md.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from nlu.cancel import is_cancel as is_cancel  # whole-message 取消 / 算了 / never mind
from nlu.embedded import EmbeddedClassifier
from nlu.errors import ModelError, NLUError, NLUUnavailable, TrainingDataError
from nlu.parse import CATEGORIES, KINDS, LANGS, OTHER_INTENTS, Entity, Parse
from nlu.rasa_http import RasaClassifier
from nlu.training import train

__all__ = [
    "CATEGORIES", "CLARIFY_BELOW", "DATA_DIR", "KINDS", "LANGS", "MODEL_DIR", "OTHER_INTENTS",
    "Classifier", "EmbeddedClassifier", "Entity", "ModelError", "NLUError", "NLUUnavailable",
    "Parse", "RasaClassifier", "TrainingDataError", "load", "parse", "train",
]

PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_DIR = PACKAGE_DIR / "model"
DATA_DIR = PACKAGE_DIR / "data"

# Below this kind (or intent) confidence the bot asks one clarifying question with buttons
# instead of acting on its guess. Chosen on the held-out split (nlu/README.md, "Confidence").
CLARIFY_BELOW = 0.6


@runtime_checkable
class Classifier(Protocol):
    """Anything that turns one message into a Parse."""

    def parse(self, text: str) -> Parse: ...


def load(model_dir: str | Path | None = None, *,
         gazetteer: Mapping[str, Mapping[str, str]] | None = None) -> Classifier:
    """The embedded classifier for `model_dir` (None: the shipped model under nlu/model/).

    `gazetteer` maps an entity type to {surface form: canonical value}, e.g.
    {"building": {"和平苑3栋": "ZN-HP-03"}}; a surface form in a message becomes an Entity
    with the canonical value.
    """
    return EmbeddedClassifier(MODEL_DIR if model_dir is None else model_dir, gazetteer)


_shared: Classifier | None = None
_shared_lock = threading.Lock()


def parse(text: str) -> Parse:
    """Parse with the shipped model, loaded once on first use."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = load()
    return _shared.parse(text)
