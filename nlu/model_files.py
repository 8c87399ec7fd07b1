"""The files of a trained model, and reading them back.

    manifest.json   format version, training data hash, library versions, heads and labels
    vocab.json      the character, word and opening features, in column order, and the
                    word segmenter's dictionary (the words the training texts were cut into)
    weights.npz     idf, and per head: coef (float32, features x labels), intercept, temperature
    entities.json   the regexes, synonyms and lookup tables of entities.yml
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlu.classifier import LinearHead
from nlu.errors import ModelError
from nlu.features import Vectoriser

FORMAT_VERSION = 1
HEADS = ("kind", "category", "urgent")


@dataclass
class ModelFiles:
    """A trained model in memory: what `save` writes and `read` returns."""

    vectoriser: Vectoriser
    heads: dict[str, LinearHead]
    entities: dict[str, Any]
    manifest: dict[str, Any]


def save(model: ModelFiles, out_dir: str | Path) -> Path:
    import sklearn

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.vectoriser.state()
    manifest = dict(model.manifest)
    manifest.update({
        "format_version": FORMAT_VERSION,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "vectoriser": state["params"],
        "heads": {name: {"labels": head.classes_, "temperature": head.temperature_, "C": head.C,
                         "nb_smoothing": head.nb_smoothing, "nb_power": head.nb_power}
                  for name, head in model.heads.items()},
        "n_features": model.vectoriser.n_features_,
    })
    (out / "vocab.json").write_text(
        json.dumps({"char": state["char_keys"], "word": state["word_keys"],
                    "head": state["head_keys"], "dictionary": state["dictionary"],
                    "dictionary_total": state["dictionary_total"]}, ensure_ascii=False),
        encoding="utf-8")
    arrays: dict[str, np.ndarray] = {"idf": np.asarray(state["idf"], dtype=np.float64)}
    for name, head in model.heads.items():
        arrays[f"{name}_coef"] = head.coef_
        arrays[f"{name}_intercept"] = head.intercept_
    # Stored uncompressed: inflating a large model's weights took longer than reading them.
    with open(out / "weights.npz", "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    (out / "entities.json").write_text(
        json.dumps(model.entities, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    (out / "manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def read(model_dir: str | Path) -> ModelFiles:
    path = Path(model_dir)
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        entities = json.loads((path / "entities.json").read_text(encoding="utf-8"))
        with np.load(path / "weights.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: not a complete griddesk NLU model ({exc})") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: model format {manifest.get('format_version')!r}, "
                         f"this code reads {FORMAT_VERSION}; retrain with `griddesk nlu train`")
    vectoriser = Vectoriser.from_state({"params": manifest["vectoriser"], "char_keys": vocab["char"],
                                        "word_keys": vocab["word"], "head_keys": vocab["head"],
                                        "dictionary": vocab["dictionary"],
                                        "dictionary_total": vocab["dictionary_total"],
                                        "idf": arrays["idf"]})
    heads = {}
    for name in HEADS:
        spec = manifest["heads"][name]
        # The naive Bayes scaling is already folded into `coef`; its settings are a record.
        head = LinearHead(C=spec["C"], nb_smoothing=spec.get("nb_smoothing"),
                          nb_power=spec.get("nb_power", 1.0))
        head.classes_ = list(spec["labels"])
        head.temperature_ = float(spec["temperature"])
        head.coef_ = arrays[f"{name}_coef"]
        head.intercept_ = arrays[f"{name}_intercept"]
        heads[name] = head
    return ModelFiles(vectoriser, heads, entities, manifest)
