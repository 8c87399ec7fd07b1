"""The shipped model on representative messages in Simplified, Traditional Chinese and English."""

from __future__ import annotations

import json

import opencc
import pytest

import nlu
from nlu.parse import CATEGORIES, KINDS, OTHER_INTENTS


@pytest.fixture(scope="module")
def classifier() -> nlu.Classifier:
    return nlu.load()


# text, kind, intent, category, urgent
MESSAGES = [
    ("楼道灯坏了好几天了，麻烦派人来修", "service_request", None, "facilities", False),
    ("请问高龄补贴怎么申请", "service_request", None, "civil_affairs", False),
    ("医保卡丢了怎么补办", "service_request", None, "social_security", False),
    ("想给孩子约打疫苗", "service_request", None, "health", False),
    ("租房登记在哪里办", "service_request", None, "residence", False),
    ("大件垃圾怎么扔", "service_request", None, "sanitation", False),
    ("物业费可以网上交吗", "service_request", None, "property", False),
    ("社区图书室几点开门", "service_request", None, "culture", False),
    ("楼上半夜跺脚吵得睡不着，说了也不听", "complaint", None, "neighbor", False),
    ("物业不作为，报修一个月都没人来", "complaint", None, "property", False),
    ("建议在小区里多装几个路灯", "proposal", None, "facilities", False),
    ("闻到很浓的煤气味，快来人", "service_request", None, "safety", True),
    ("我爸晕倒了叫不醒", "service_request", None, "health", True),
    ("你好", "other", "greet", "other", False),
    ("谢谢你们", "other", "thanks", "other", False),
    ("我的网格员是谁", "other", "ask_grid_worker", "other", False),
    ("ZN-20261121-0007 处理到哪了", "other", "query_status", "other", False),
    ("你能做什么", "other", "help", "other", False),
    ("讲个笑话", "other", "out_of_scope", "other", False),
    ("電梯壞了，麻煩盡快來修", "service_request", None, "facilities", False),
    ("樓上天天吵到半夜", "complaint", None, "neighbor", False),
    ("建議社區多搞親子活動", "proposal", None, "culture", False),
    ("煤氣味好濃，快啲嚟人", "service_request", None, "safety", True),
    ("垃圾桶滿了幾天都冇人收", "complaint", None, "sanitation", False),
    ("the street light outside my building is broken", "service_request", None, "facilities", False),
    ("my neighbour plays loud music every night and ignores me", "complaint", None, "neighbor", False),
    ("i smell gas in the corridor", "service_request", None, "safety", True),
    ("how do i apply for the elderly allowance", "service_request", None, "civil_affairs", False),
    ("where can i get my flu vaccine", "service_request", None, "health", False),
    ("hello", "other", "greet", "other", False),
    ("thank you so much", "other", "thanks", "other", False),
    ("who is my grid worker", "other", "ask_grid_worker", "other", False),
    ("what is the status of my case", "other", "query_status", "other", False),
]


@pytest.mark.parametrize(("text", "kind", "intent", "category", "urgent"), MESSAGES)
def test_resident_message_is_understood(classifier: nlu.Classifier, text: str, kind: str,
                                        intent: str | None, category: str, urgent: bool) -> None:
    parsed = classifier.parse(text)
    assert (parsed.kind, parsed.intent, parsed.category, parsed.urgent) == (
        kind, intent, category, urgent)


def test_every_head_reports_a_probability(classifier: nlu.Classifier) -> None:
    for text, kind, *_ in MESSAGES:
        parsed = classifier.parse(text)
        expected = {"kind", "category", "urgent"} | ({"intent"} if kind == "other" else set())
        assert set(parsed.confidence) == expected
        assert all(0.0 <= p <= 1.0 for p in parsed.confidence.values())
        assert parsed.kind in KINDS and parsed.category in CATEGORIES
        assert parsed.intent is None or parsed.intent in OTHER_INTENTS


@pytest.mark.parametrize(("text", "lang"), [
    ("楼道灯坏了", "zh-Hans"), ("樓道燈壞了", "zh-Hant"), ("the lift is broken", "en"),
    ("3栋的lift坏了", "zh-Hans"),
])
def test_language_is_detected(classifier: nlu.Classifier, text: str, lang: str) -> None:
    assert classifier.parse(text).lang == lang


def test_traditional_input_gets_the_same_answer_as_its_simplified_form(
        classifier: nlu.Classifier) -> None:
    to_traditional = opencc.OpenCC("s2t")
    for text, *_ in MESSAGES:
        if text.isascii():
            continue
        simplified, traditional = classifier.parse(text), classifier.parse(to_traditional.convert(text))
        assert (traditional.kind, traditional.intent, traditional.category, traditional.urgent) == (
            simplified.kind, simplified.intent, simplified.category, simplified.urgent), text
        assert traditional.confidence == pytest.approx(simplified.confidence, abs=1e-6)


@pytest.mark.parametrize("text", ["", "   ", "😀😀😀", "🙏", "\x00\x01"])
def test_empty_or_emoji_input_is_out_of_scope_with_low_confidence(
        classifier: nlu.Classifier, text: str) -> None:
    parsed = classifier.parse(text)
    assert (parsed.kind, parsed.intent) == ("other", "out_of_scope")
    assert parsed.confidence["kind"] < nlu.CLARIFY_BELOW
    assert parsed.urgent is False


def test_a_100_kb_message_is_parsed_without_crashing(classifier: nlu.Classifier) -> None:
    text = "楼道灯坏了，" + "啊" * 100_000 + " 电话13812345678"
    parsed = classifier.parse(text)
    assert parsed.kind in KINDS
    assert parsed.text == text


def test_a_lone_surrogate_is_read_as_an_unknown_character(classifier: nlu.Classifier) -> None:
    # json.loads('"\\ud83d"') gives half of an emoji, which no encoder accepts.
    text = json.loads('"3栋2单元楼道灯坏了\\ud83d"')
    parsed = classifier.parse(text)
    assert (parsed.kind, parsed.category) == ("service_request", "facilities")
    assert parsed.text == "3栋2单元楼道灯坏了?"
    assert parsed.entity("building") == "3"
    assert [p.category for p in classifier.parse_many([text, "谢谢\udfff"])] == [  # type: ignore[attr-defined]
        "facilities", classifier.parse("谢谢").category]


def test_module_level_parse_uses_the_shipped_model() -> None:
    parsed = nlu.parse("谢谢")
    assert (parsed.kind, parsed.intent) == ("other", "thanks")
    assert isinstance(nlu.load(), nlu.Classifier)


def test_shipped_model_manifest_names_its_data_and_labels() -> None:
    import json

    manifest = json.loads((nlu.MODEL_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == 1
    assert len(manifest["training_data_sha256"]) == 64
    assert set(manifest["heads"]["category"]["labels"]) == set(CATEGORIES)
    assert set(manifest["heads"]["kind"]["labels"]) == (set(KINDS) - {"other"}) | set(OTHER_INTENTS)
    assert set(manifest["heads"]["urgent"]["labels"]) == {"urgent", "not_urgent"}


def test_nlu_imports_nothing_of_ours() -> None:
    import ast

    ours = {"bot", "handlers", "storage", "tests"}
    for path in nlu.PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & ours, path.name


def test_parsing_many_messages_at_once_gives_the_same_parses(classifier: nlu.Classifier) -> None:
    texts = [text for text, *_ in MESSAGES] + ["", "😀", "楼道灯坏了，" * 400]
    many = classifier.parse_many(texts)  # type: ignore[attr-defined]
    single = [classifier.parse(t) for t in texts]
    assert [(p.kind, p.intent, p.category, p.urgent, p.entities) for p in many] == [
        (p.kind, p.intent, p.category, p.urgent, p.entities) for p in single]
    for a, b in zip(many, single):
        assert a.confidence == pytest.approx(b.confidence, abs=1e-3)
