"""One message's features (`Vectoriser.transform_one`, plain Python up to `ONE_TEXT_CHARS`
characters) are the batch path's row to the bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nlu
from nlu import model_files
from nlu.features import ONE_TEXT_CHARS, Vectoriser
from nlu.normalise import read

MESSAGES = [
    "3单元楼道的灯坏了好几天了，晚上太黑", "小区门口的垃圾三天没人清运了，味道很大",
    "我想办理高龄补贴，需要带什么材料", "楼上邻居每天半夜装修噪音扰民，我要投诉",
    "电梯又停了，老人上不了楼", "建议在小区空地增设一些健身器材",
    "How do I apply for a residence permit?", "樓下的水管漏水，淹到樓道了",
]
# Pieces of messages the model knows, and characters it may not: Traditional, full width,
# "_" (the mark the n-grams give spaces), emoji and other characters beyond the BMP.
PIECES = [*MESSAGES, "楼道灯", "没有", "路灯", "不亮", "救命", "not working", "lift", "block 3",
          "12", "3栋2单元", "_", " ", "  ", "😀", "🆘", "𠀀", "𪚥", "ａｂ", "樓", "、", "_a_", "x_"]
CHARS = sorted(set("".join(PIECES)))
KNOWN_TEXT = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
LONG_TEXT = st.lists(st.sampled_from(PIECES), min_size=8, max_size=40).map("".join)
SOME_TEXT = st.text(alphabet=st.sampled_from(CHARS), max_size=120)
ANY_TEXT = st.text(max_size=120)
TEXTS = KNOWN_TEXT | LONG_TEXT | SOME_TEXT | ANY_TEXT

# The shipped model, and its vocabulary with windows short enough that the plain-Python path
# truncates at each of them, with n-grams shorter than the opening's 3 characters, and with an
# opening and words of one character.
WINDOWS = {"shipped": {}, "short": {"char_chars": 60, "head_chars": 12, "word_chars": 8},
           "bigrams": {"char_max": 2, "head_chars": 5, "word_chars": 3},
           "one": {"head_chars": 1, "word_chars": 1}}


@pytest.fixture(scope="module")
def shipped() -> Vectoriser:
    return model_files.read(nlu.MODEL_DIR).vectoriser


@pytest.fixture(scope="module", params=list(WINDOWS))
def vectoriser(request: pytest.FixtureRequest, shipped: Vectoriser) -> Vectoriser:
    if not WINDOWS[request.param]:
        return shipped
    state: dict[str, Any] = shipped.state()
    state["params"] = {**state["params"], **WINDOWS[request.param]}
    return Vectoriser.from_state(state)


def assert_batch_row(vectoriser: Vectoriser, text: str) -> None:
    columns, values = vectoriser.transform_one(text)
    _, want_columns, want_values = vectoriser._entries([text])
    assert (columns.dtype, values.dtype) == (np.dtype(np.int64), np.dtype(np.float64))
    assert columns.tolist() == want_columns.tolist(), text
    assert values.tolist() == want_values.tolist(), text


@settings(max_examples=300, deadline=None)
@given(text=TEXTS)
def test_a_message_gets_the_batch_row(vectoriser: Vectoriser, text: str) -> None:
    assert_batch_row(vectoriser, text)
    assert_batch_row(vectoriser, read(text).normalised)


ODD_TEXTS = [
    "", " ", "   ", "_", "__", "_ _", "a_b", "楼道_灯", "x", "3", "12345", "楼", "楼道灯坏了",
    "樓下的水管漏水，淹到樓道了", "how do i apply for a residence permit?", "😀", "😀😀 救命 😀",
    "🆘", "\U0002a6a5𪚥 生僻字", "ꙮꙮꙮ", "𓀀𓀁𓀂", "ꙮ楼道ꙮ灯ꙮ", "ａｂｃ", "a\u3000b", "\t\n",
]
# One key as often as a text on the plain-Python path can hold it, and lengths around every
# window: the opening and words (40), the plain-Python path, the characters counted (2000).
LONG = "".join(MESSAGES) * 80
EDGES = [*ODD_TEXTS, "灯" * ONE_TEXT_CHARS, *(read(m).normalised for m in MESSAGES),
         *(LONG[:n] for n in (39, 40, 41, ONE_TEXT_CHARS - 1, ONE_TEXT_CHARS,
                              ONE_TEXT_CHARS + 1, 1999, 2000, 2001, len(LONG)))]


@pytest.mark.parametrize("index", range(len(EDGES)))
def test_edge_cases_get_the_batch_row(vectoriser: Vectoriser, index: int) -> None:
    assert_batch_row(vectoriser, EDGES[index])


def test_rows_are_those_of_transform(shipped: Vectoriser) -> None:
    matrix = shipped.transform(EDGES)
    for i, text in enumerate(EDGES):
        columns, values = shipped.transform_one(text)
        row = matrix.getrow(i)
        assert (columns.tolist(), values.tolist()) == (row.indices.tolist(), row.data.tolist())


def test_unknown_characters_and_spaces_have_no_features(shipped: Vectoriser) -> None:
    for text in ("", " ", "_", "ꙮꙮ ꙮ", "𓀀𓀁"):
        columns, values = shipped.transform_one(text)
        assert (columns.shape, values.shape) == ((0,), (0,)), text


def test_only_a_long_text_takes_the_batch_path(shipped: Vectoriser,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def batch(texts: list[str]) -> Any:
        raise AssertionError(f"batch path for {texts!r}")

    monkeypatch.setattr(shipped, "_entries", batch)
    assert len(shipped.transform_one(LONG[:ONE_TEXT_CHARS])[0])
    with pytest.raises(AssertionError, match="batch path"):
        shipped.transform_one(LONG[:ONE_TEXT_CHARS + 1])


