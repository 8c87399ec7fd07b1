"""Rasa NLU YAML -> examples, synonyms, regexes and lookup tables.

We read the subset of Rasa's format (`version: "3.1"`) that griddesk writes:

    nlu:
    - intent: complaint
      examples: |
        - 楼上天天半夜跺脚
    - synonym: "+1d"
      examples: |
        - 明天
    - regex: case_number
      examples: |
        - [A-Za-z]{2,4}-\\d{8}-\\d{4}
    - lookup: building
      examples: |
        - 和平苑3栋

Rasa's inline entity annotations (`[3栋](building)`) are reduced to their text, so a file
written for a Rasa server trains the embedded model unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nlu.errors import TrainingDataError

# [text](entity) and [text]{"entity": ...} annotations.
_ANNOTATION = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\{[^}]*\})")


@dataclass(frozen=True)
class Example:
    """One labelled message."""

    text: str
    label: str


@dataclass
class TrainingData:
    """Everything one or more Rasa NLU files say."""

    examples: list[Example] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)
    regexes: dict[str, list[str]] = field(default_factory=dict)
    lookups: dict[str, list[str]] = field(default_factory=dict)

    def labels(self) -> list[str]:
        """The intents in the order they first appear."""
        return list(dict.fromkeys(e.label for e in self.examples))

    def merge(self, other: TrainingData) -> TrainingData:
        self.examples.extend(other.examples)
        self.synonyms.update(other.synonyms)
        for name, patterns in other.regexes.items():
            self.regexes.setdefault(name, []).extend(patterns)
        for name, values in other.lookups.items():
            self.lookups.setdefault(name, []).extend(values)
        return self


def _items(block: object, where: str) -> list[str]:
    if not isinstance(block, str):
        raise TrainingDataError(f"{where}: `examples` must be a block string of '- ' lines")
    items = []
    for line in block.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("- "):
            raise TrainingDataError(f"{where}: expected '- ' at the start of {line!r}")
        items.append(line[2:].strip())
    return items


def strip_annotations(text: str) -> str:
    """The text of a Rasa example without its entity annotations."""
    return _ANNOTATION.sub(r"\1", text)


def read_yaml(path: str | Path) -> TrainingData:
    """Read one Rasa NLU YAML file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TrainingDataError(f"{path}: not valid YAML: {exc}") from exc
    data = TrainingData()
    if not isinstance(doc, dict) or not isinstance(doc.get("nlu", []), list):
        raise TrainingDataError(f"{path}: expected a mapping with an `nlu:` list")
    for n, entry in enumerate(doc.get("nlu") or []):
        where = f"{path} nlu[{n}]"
        if not isinstance(entry, dict):
            raise TrainingDataError(f"{where}: expected a mapping")
        items = _items(entry.get("examples"), where)
        if "intent" in entry:
            label = str(entry["intent"])
            data.examples.extend(Example(strip_annotations(t), label) for t in items if t)
        elif "synonym" in entry:
            canonical = str(entry["synonym"])
            for t in items:
                data.synonyms[t] = canonical
        elif "regex" in entry:
            name = str(entry["regex"])
            for pattern in items:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise TrainingDataError(f"{where}: bad regex {pattern!r}: {exc}") from exc
            data.regexes.setdefault(name, []).extend(items)
        elif "lookup" in entry:
            data.lookups.setdefault(str(entry["lookup"]), []).extend(items)
        else:
            raise TrainingDataError(f"{where}: expected intent, synonym, regex or lookup")
    return data


def read_files(paths: Iterable[str | Path]) -> TrainingData:
    data = TrainingData()
    for path in paths:
        data.merge(read_yaml(path))
    return data


def files_hash(paths: Iterable[str | Path]) -> str:
    """A SHA-256 over the files' names and bytes, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
