"""The hashed feature path gives exactly the features the n-gram strings define."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

import nlu
from nlu.features import NgramColumns, Vectoriser, char_ngrams, key_hashes, word_keys
from nlu.normalise import normalise
from nlu.training_data import read_yaml

ODD_TEXTS = [
    "", " ", "_", "a", "a  b", "x_y z", "楼道灯坏了", "3栋2单元 的 灯 不亮",
    "the lift in block 3 is broken again!!", "😀😀 救命 😀", "\U0002a6a5𪚥 生僻字",
    "很长的来信。" * 500,  # past char_chars: only the first characters count
]


@pytest.fixture(scope="module")
def vectoriser() -> Vectoriser:
    texts = [normalise(e.text) for name in ("kinds.yml", "categories.yml")
             for e in read_yaml(nlu.DATA_DIR / name).examples]
    return Vectoriser(max_features=20_000).fit(texts + ODD_TEXTS)


def expected_row(vec: Vectoriser, text: str) -> dict[int, float]:
    """The row as the module docstring defines it, computed from strings."""
    blocks = (
        (char_ngrams(text[:vec.char_chars], vec.char_max), vec.char_keys_, 0, 1.0),
        (Counter(word_keys(text[:vec.word_chars], vec._cut_fn)), vec.word_keys_,
         len(vec.char_keys_), vec.word_weight),
        (char_ngrams(text[:vec.head_chars], 3), vec.head_keys_,
         len(vec.char_keys_) + len(vec.word_keys_), vec.head_weight),
    )
    row: dict[int, float] = {}
    for counts, keys, offset, weight in blocks:
        column = {k: offset + i for i, k in enumerate(keys)}
        block = {column[k]: (1 + math.log(c)) * vec.idf_[column[k]]
                 for k, c in counts.items() if k in column}
        norm = math.sqrt(sum(v * v for v in block.values()))
        row.update({j: weight * v / norm for j, v in block.items()})
    return row


@pytest.mark.parametrize("index", range(len(ODD_TEXTS)))
def test_odd_texts_get_the_features_their_strings_define(vectoriser: Vectoriser,
                                                          index: int) -> None:
    text = ODD_TEXTS[index]
    columns, values = vectoriser.transform_one(text)
    got = dict(zip(columns.tolist(), values.tolist()))
    want = expected_row(vectoriser, text)
    assert got.keys() == want.keys()
    assert all(got[j] == pytest.approx(want[j]) for j in want)


def test_training_texts_get_the_features_their_strings_define(vectoriser: Vectoriser) -> None:
    texts = [normalise(e.text) for e in read_yaml(nlu.DATA_DIR / "kinds.yml").examples][:300]
    for text in texts:
        columns, values = vectoriser.transform_one(text)
        want = expected_row(vectoriser, text)
        assert dict(zip(columns.tolist(), np.round(values, 9).tolist())) == {
            j: round(v, 9) for j, v in want.items()}, text


def test_a_batch_has_the_rows_of_its_texts(vectoriser: Vectoriser) -> None:
    matrix = vectoriser.transform(ODD_TEXTS)
    assert matrix.shape == (len(ODD_TEXTS), vectoriser.n_features_)
    for i, text in enumerate(ODD_TEXTS):
        columns, values = vectoriser.transform_one(text)
        row = matrix.getrow(i)
        assert dict(zip(row.indices.tolist(), row.data.tolist())) == pytest.approx(
            dict(zip(columns.tolist(), values.tolist())))


def test_the_table_finds_every_key_and_nothing_else() -> None:
    keys = [f"{a}{b}{c}" for a in "社区楼道灯坏" for b in "了吗呢啊" for c in "abc"] + list("一二三")
    table = NgramColumns(keys, offset=10)
    which, columns = table.find(key_hashes(keys))
    assert sorted(zip(which.tolist(), columns.tolist())) == [(i, 10 + i) for i in range(len(keys))]
    strangers = key_hashes(["社区x", "楼道灯", "四", "abcd"])
    assert len(table.find(strangers)[0]) == 0


def test_an_empty_table_finds_nothing() -> None:
    table = NgramColumns([], offset=0)
    assert len(table.find(key_hashes(["a", "bc"]))[0]) == 0
