"""A keyword classifier at our Classifier port, so handler tests do not depend on a trained model."""

from __future__ import annotations

import re

from nlu.parse import Entity, Parse

KINDS = [
    ("proposal", ("建议", "提议", "propose", "suggest")),
    ("complaint", ("投诉", "噪音", "扰民", "complain", "态度")),
    ("other:greet", ("你好", "您好", "hello")),
    ("other:thanks", ("谢谢", "thanks")),
    ("other:ask_grid_worker", ("网格员是谁", "who is my grid worker")),
    ("other:query_status", ("进度", "status of")),
]
CATEGORIES = [
    ("civil_affairs", ("低保", "证明", "补贴")),
    ("facilities", ("灯", "电梯", "水管", "井盖", "light")),
    ("neighbor", ("噪音", "邻居")),
    ("sanitation", ("垃圾",)),
]
URGENT = ("煤气", "燃气", "着火", "晕倒", "gas")
CASE_NUMBER = re.compile(r"[A-Za-z]{2,4}-\d{8}-\d{4}")


class KeywordClassifier:
    def __init__(self, kind_confidence: float = 0.9) -> None:
        self.kind_confidence = kind_confidence

    def parse(self, text: str) -> Parse:
        low = text.lower()
        kind, intent = "service_request", None
        for label, words in KINDS:
            if any(w in low for w in words):
                kind, _, intent_part = label.partition(":")
                intent = intent_part or None
                break
        category = next((c for c, words in CATEGORIES if any(w in low for w in words)), "other")
        entities = tuple(
            Entity("case_number", m.group(0).upper(), m.group(0), m.start(), m.end())
            for m in CASE_NUMBER.finditer(text)
        )
        confidence = 0.3 if "不确定" in text else self.kind_confidence
        lang = "en" if text.isascii() else "zh-Hans"
        return Parse(text=text, kind=kind, intent=intent, category=category,
                     urgent=any(w in low for w in URGENT), lang=lang,
                     confidence={"kind": confidence, "category": 0.9, "urgent": 0.9}, entities=entities)
