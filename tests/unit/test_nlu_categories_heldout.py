"""The unseen category set (nlu/data/heldout_categories.jsonl): never trained on, enough of each
confusable class in each language, and the shipped model reads it at the target; training with
--extra files adds to the head that has the label and refuses any other label."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import nlu
from nlu.evaluation import evaluate, read_jsonl
from nlu.training_data import read_yaml

HELD_OUT = nlu.DATA_DIR / "heldout_categories.jsonl"
CONFUSABLE = ("property", "facilities", "residence", "civil_affairs", "sanitation", "neighbor", "culture")


def test_no_unseen_category_message_is_trained_on() -> None:
    held_out = {row["text"] for row in read_jsonl(HELD_OUT)}
    trained = {e.text for name in ("kinds.yml", "categories.yml", "urgent.yml")
               for e in read_yaml(nlu.DATA_DIR / name).examples}
    assert not held_out & trained


def test_each_confusable_class_has_25_messages_over_three_languages() -> None:
    rows = read_jsonl(HELD_OUT)
    per_class = Counter(r["category"] for r in rows if r.get("kind") != "proposal")
    assert all(per_class[c] >= 25 for c in CONFUSABLE), per_class
    assert sum(r.get("kind") == "proposal" for r in rows) >= 25
    for c in CONFUSABLE:
        assert {r["lang"] for r in rows if r["category"] == c} == set(nlu.LANGS)


def test_the_shipped_model_reads_unseen_categories_at_the_target() -> None:
    figures = evaluate(nlu.load(), read_jsonl(HELD_OUT))
    assert figures["category"]["accuracy"] >= 0.85


def _write(path: Path, intent: str, *texts: str) -> Path:
    body = "\n".join(f"    - {t}" for t in texts)
    path.write_text(f'version: "3.1"\nnlu:\n- intent: {intent}\n  examples: |\n{body}\n', encoding="utf-8")
    return path


def test_extra_examples_join_the_head_with_their_label(tmp_path: Path) -> None:
    from tests.unit.test_nlu_training import write_data

    data = write_data(tmp_path / "data")
    extra = _write(tmp_path / "extra.yml", "facilities", "小区东门那排灯全黑了", "东门的灯一盏都不亮")
    out = nlu.train(data, tmp_path / "model", extra_files=[extra])
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    plain = nlu.train(data, tmp_path / "plain")
    plain_manifest = json.loads((plain / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["examples"]["category"] == plain_manifest["examples"]["category"] + 2
    assert manifest["examples"]["kind"] == plain_manifest["examples"]["kind"]
    assert "extra.yml" in manifest["training_files"]

    wrong = _write(tmp_path / "wrong.yml", "plumbing", "水管爆了")
    with pytest.raises(nlu.TrainingDataError, match="plumbing"):
        nlu.train(data, tmp_path / "bad", extra_files=[wrong])
