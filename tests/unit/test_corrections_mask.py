"""Exported corrections carry no personal data; the model gate fails a worse candidate."""

from __future__ import annotations

import pytest

from handlers.cases.corrections import mask
from nlu.evaluation import gate


@pytest.mark.parametrize(("text", "masked"), [
    ("电话13812345678", "电话<phone>"),
    ("电话 +86 138-1234-5678 找我", "电话 <phone> 找我"),
    ("座机0755-86001234", "座机<phone>"),
    ("身份证44030119800101123X丢了", "身份证<id>丢了"),
    ("3栋2单元301漏水", "<room>漏水"),
    ("12號樓1單元502室", "<room>"),
    ("住在3-2-301", "住在<room>"),
    ("1103室的人", "<room>的人"),
    ("Building 7, unit 2, room 1103 leaks", "<room>, <room>, <room> leaks"),
    ("我叫王秀英，找网格员张丽", "我叫<name>，找网格员<name>"),
])
def test_personal_data_is_masked(text: str, masked: str) -> None:
    assert mask(text, ["王秀英", "张丽"]) == masked


def test_words_that_are_no_personal_data_stay() -> None:
    text = "楼道灯坏了三天了，ZN-20261121-0007 到哪一步了"
    assert mask(text, ["王秀英"]) == text


def _figures(kind: float, category: float, recall: float) -> dict[str, dict[str, float]]:
    return {"kind": {"n": 100, "accuracy": kind}, "category": {"n": 100, "accuracy": category, "macro_f1": category},
            "urgent": {"n": 100, "accuracy": 0.98, "recall": recall}}


def test_gate_fails_a_head_worse_by_more_than_the_margin() -> None:
    running = _figures(0.90, 0.85, 0.95)
    assert gate(running, _figures(0.89, 0.86, 0.95), 0.02).worse == []
    assert gate(running, _figures(0.90, 0.80, 0.95), 0.02).worse == ["category accuracy", "category macro_f1"]
    assert gate(running, _figures(0.91, 0.90, 0.90), 0.02).worse == ["urgent recall"]
