"""The life-risk lexicon beside the urgent head: an emergency is not missed, a look-alike is not
sent to the duty leader, in Simplified, Traditional Chinese and English."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import nlu
from nlu import lifeline
from nlu.evaluation import evaluate, read_jsonl
from nlu.normalise import normalise
from nlu.training_data import read_yaml

HELD_OUT = nlu.DATA_DIR / "heldout_urgent.jsonl"


@pytest.fixture(scope="module")
def classifier() -> nlu.Classifier:
    return nlu.load()


def _scan(text: str) -> lifeline.Risk:
    return lifeline.scan(normalise(text))


# The classes of misses and false alarms residents' messages showed, in new wordings.
URGENT = [
    "an old man collapsed by the lifts and he is not responding",
    "暴风雨把学校旁边那堵墙刮倒了，就在孩子们走的小路边上，太危险了",
    "大風吹冧咗公園圍牆，小朋友成日喺旁邊行，太危險了",
    "电梯坏在半路，我们困了一个小时了🙏",
    "升降機停咗，困咗成個鐘了🙏🙏",
    "着 火 了 ， 3 栋 楼 道",
    "smell gass everywhere on the 2nd floor",
]
NOT_URGENT = [
    "大树的树枝快碰到电线了，有空来剪一下",
    "楼下那家饭店的污水味很重",
    "the street light on our road has been broken for a week",
    "is the fire drill next tuesday?",
    "燃气费在哪交",
    "想预约燃气灶维修",
    "昨晚的火已经灭了，想问下保险怎么赔",
    "没有漏气，就是想问下燃气表怎么看",
]


@pytest.mark.parametrize("text", URGENT)
def test_an_emergency_in_words_the_model_never_saw_is_urgent(classifier: nlu.Classifier, text: str) -> None:
    assert classifier.parse(text).urgent


@pytest.mark.parametrize("text", NOT_URGENT)
def test_a_look_alike_without_present_danger_is_not_urgent(classifier: nlu.Classifier, text: str) -> None:
    assert not classifier.parse(text).urgent


@pytest.mark.parametrize(("text", "live", "defused"), [
    ("没有着火，就是楼下有人在烧纸", (), ("fire",)),
    ("there's no smell of gas any more", (), ("gas",)),
    ("车库起火已经扑灭了", (), ("fire",)),
    ("the fire in the kitchen was put out last night", (), ("fire",)),
    ("电梯上周困过人，现在好了", (), ("trapped",)),
    ("刚才闻到煤气味，原来是邻居在炒菜，没事了", (), ("gas",)),
    ("楼道里堆满杂物，怕起火", (), ("fire",)),
    ("消防演练的时候楼道里会冒烟吗", (), ("fire",)),
    # "过去" after 晕 is "passed out", not the past; fear after the hazard is fear of it.
    ("我爸晕过去了", ("collapse",), ()),
    ("有股很浓的煤气味 是不是哪里漏了 好怕", ("gas",), ()),
    # "没人" denies a person, not the hazard.
    ("没人管燃气味越来越重", ("gas",), ()),
    ("燃气味从昨天一直到现在", ("gas",), ()),
    ("🆘", ("distress",), ()),
    ("请问高龄补贴怎么申请", (), ()),
])
def test_negation_supposition_and_the_past_defuse_a_hazard_within_its_clause(
        text: str, live: tuple[str, ...], defused: tuple[str, ...]) -> None:
    assert _scan(text) == lifeline.Risk(live, defused)


def test_the_head_alone_needs_more_than_even_odds_and_cannot_overrule_a_defused_hazard() -> None:
    assert lifeline.decide(lifeline.NO_RISK, lifeline.MODEL_ALONE_AT) == (True, lifeline.MODEL_ALONE_AT)
    assert not lifeline.decide(lifeline.NO_RISK, 0.6)[0]
    assert not lifeline.decide(lifeline.Risk(defused=("fire",)), 0.99)[0]
    urgent, confidence = lifeline.decide(lifeline.Risk(live=("gas",)), 0.2)
    assert urgent and confidence == lifeline.LEXICON_CONFIDENCE


def test_a_distress_sign_alone_is_urgent(classifier: nlu.Classifier) -> None:
    parsed = classifier.parse("🆘🆘")
    assert parsed.urgent and (parsed.kind, parsed.intent) == ("other", "out_of_scope")


def test_the_urgent_held_out_set_is_large_labelled_and_never_trained_on() -> None:
    rows = [json.loads(line) for line in HELD_OUT.read_text(encoding="utf-8").splitlines()]
    counts = Counter((row["lang"], row["urgent"]) for row in rows)
    for lang in nlu.LANGS:
        assert counts[(lang, True)] >= 40 and counts[(lang, False)] >= 80, lang
    trained = {normalise(e.text) for name in ("kinds.yml", "categories.yml", "urgent.yml")
               for e in read_yaml(nlu.DATA_DIR / name).examples}
    assert not {normalise(row["text"]) for row in rows} & trained


def test_urgent_recall_and_precision_on_unseen_messages_in_every_language(
        classifier: nlu.Classifier) -> None:
    by_lang = evaluate(classifier, read_jsonl(HELD_OUT))["urgent"]["by_lang"]
    assert set(by_lang) == set(nlu.LANGS)
    for lang, figures in by_lang.items():
        assert figures["recall"] >= 0.95, (lang, figures)
        assert figures["precision"] >= 0.70, (lang, figures)


def test_eval_reports_urgent_recall_per_language(classifier: nlu.Classifier) -> None:
    from nlu.evaluation import format_figures

    rows = [{"text": "有人晕倒了叫不醒", "urgent": True, "lang": "zh-Hans"},
            {"text": "someone collapsed and is not breathing", "urgent": True},
            {"text": "燃气费在哪交", "urgent": False, "lang": "zh-Hans"}]
    figures = evaluate(classifier, rows)
    assert figures["urgent"]["by_lang"] == {
        "en": {"n": 1, "urgent": 1, "recall": 1.0, "precision": 1.0},
        "zh-Hans": {"n": 2, "urgent": 1, "recall": 1.0, "precision": 1.0},
    }
    assert "  zh-Hans  n=2     urgent=1    recall=1.000 precision=1.000" in format_figures(figures)


def test_the_first_character_guard_changes_no_match() -> None:
    """The scan skips positions no Chinese pattern can start at; it finds what the plain
    alternation finds, on every message we have."""
    plain = lifeline.compile_lexicon(guarded=False)
    assert plain.pattern != lifeline.PATTERN.pattern
    texts = [e.text for name in ("kinds.yml", "categories.yml", "urgent.yml")
             for e in read_yaml(nlu.DATA_DIR / name).examples]
    texts += [row["text"] for name in ("heldout.jsonl", "heldout_urgent.jsonl")
              for row in read_jsonl(nlu.DATA_DIR / name)]
    texts += URGENT + NOT_URGENT
    for text in map(normalise, texts):
        assert ([(m.lastgroup, m.span()) for m in lifeline.PATTERN.finditer(text)]
                == [(m.lastgroup, m.span()) for m in plain.finditer(text)]), text
