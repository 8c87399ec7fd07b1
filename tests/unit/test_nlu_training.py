"""Training from Rasa NLU YAML: the format, reproducibility, a city's own category file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import nlu
from nlu.training_data import read_yaml

KINDS_YML = """\
version: "3.1"
nlu:
- intent: service_request
  examples: |
    - 楼道灯坏了麻烦来修
    - 电梯坏了能修一下吗
    - 请问低保怎么申请
    - the street light is broken
    - how do i apply for a subsidy
- intent: complaint
  examples: |
    - 楼上天天半夜吵闹
    - 物业不作为投诉
    - 邻居的狗天天叫
    - my neighbour is so noisy every night
    - the property company ignores us
- intent: proposal
  examples: |
    - 建议小区加装电梯
    - 建议多装几盏路灯
    - 提议办个读书会
    - i suggest more benches
    - we should have a book club
- intent: greet
  examples: |
    - 你好
    - 在吗
    - hello
- intent: thanks
  examples: |
    - 谢谢
    - 多谢
    - thanks
"""
CATEGORIES_YML = """\
version: "3.1"
nlu:
- intent: facilities
  examples: |
    - 楼道灯坏了麻烦来修
    - 电梯坏了能修一下吗
    - the street light is broken
    - 建议小区加装电梯
    - 建议多装几盏路灯
- intent: civil_affairs
  examples: |
    - 请问低保怎么申请
    - how do i apply for a subsidy
    - 开个证明
- intent: neighbor
  examples: |
    - 楼上天天半夜吵闹
    - 邻居的狗天天叫
    - my neighbour is so noisy every night
- intent: other
  examples: |
    - 你好
    - 谢谢
    - hello
"""
URGENT_YML = """\
version: "3.1"
nlu:
- intent: urgent
  examples: |
    - 闻到煤气味快来人
    - 有人晕倒了
    - i smell gas
- intent: not_urgent
  examples: |
    - 楼道灯坏了麻烦来修
    - 请问低保怎么申请
    - 你好
    - 建议小区加装电梯
"""


def write_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kinds.yml").write_text(KINDS_YML, encoding="utf-8")
    (folder / "categories.yml").write_text(CATEGORIES_YML, encoding="utf-8")
    (folder / "urgent.yml").write_text(URGENT_YML, encoding="utf-8")
    (folder / "entities.yml").write_text((nlu.DATA_DIR / "entities.yml").read_text(encoding="utf-8"),
                                         encoding="utf-8")
    return folder


PROBES = ["路灯坏了", "楼上好吵", "建议装电梯", "你好啊", "闻到煤气味", "低保", "the lift is broken", "😀"]


def test_training_twice_on_the_same_data_gives_the_same_model(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data")
    first = nlu.train(data, tmp_path / "a")
    second = nlu.train(data, tmp_path / "b")
    for name in ("manifest.json", "vocab.json", "entities.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    a, b = nlu.load(first), nlu.load(second)
    assert [a.parse(t) for t in PROBES] == [b.parse(t) for t in PROBES]


def test_small_model_learns_its_labels(tmp_path: Path) -> None:
    model = nlu.load(nlu.train(write_data(tmp_path / "data"), tmp_path / "m"))
    assert model.parse("楼上天天半夜吵闹").kind == "complaint"
    assert model.parse("你好").intent == "greet"
    assert model.parse("楼道灯坏了麻烦来修").category == "facilities"


def test_a_city_trains_its_own_category_file(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data")
    city = tmp_path / "city-categories.yml"
    city.write_text(textwrap.dedent("""\
        version: "3.1"
        nlu:
        - intent: 城乡建设
          examples: |
            - 路灯坏了
            - 电梯坏了
            - 道路施工
        - intent: 劳动和社会保障
          examples: |
            - 社保怎么交
            - 低保申请
            - 拖欠工资
        """), encoding="utf-8")
    out = nlu.train(data, tmp_path / "m", categories_file=city)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["heads"]["category"]["labels"] == ["劳动和社会保障", "城乡建设"]
    assert nlu.load(out).parse("路灯坏了").category == "城乡建设"


def test_rasa_entity_annotations_are_read_as_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "k.yml"
    path.write_text(textwrap.dedent("""\
        version: "3.1"
        nlu:
        - intent: service_request
          examples: |
            - [3栋](building)的灯坏了
            - 找[王姐]{"entity": "person"}
        - synonym: "+1d"
          examples: |
            - 明天
        """), encoding="utf-8")
    data = read_yaml(path)
    assert [e.text for e in data.examples] == ["3栋的灯坏了", "找王姐"]
    assert data.synonyms == {"明天": "+1d"}


@pytest.mark.parametrize(("content", "message"), [
    ("nlu: [1, 2]", "expected a mapping"),
    ("nlu:\n- intent: a\n  examples: |\n    no dash here\n", "expected '- '"),
    ("nlu:\n- regex: r\n  examples: |\n    - ([unclosed\n", "bad regex"),
    ("nlu:\n- something: a\n  examples: |\n    - x\n", "intent, synonym, regex or lookup"),
])
def test_malformed_training_file_is_reported_with_its_name(tmp_path: Path, content: str,
                                                           message: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(nlu.TrainingDataError, match=message):
        read_yaml(path)


def test_missing_training_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(nlu.TrainingDataError, match="kinds.yml"):
        nlu.train(tmp_path, tmp_path / "m")


def test_loading_a_folder_without_a_model_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(nlu.ModelError, match="not a complete"):
        nlu.load(tmp_path)


def test_the_model_cuts_its_training_texts_as_the_full_jieba_dictionary_does(
        tmp_path: Path) -> None:
    from nlu.features import Vectoriser, _cut
    from nlu.normalise import normalise

    texts = [normalise(e.text) for name in ("kinds.yml", "categories.yml")
             for e in read_yaml(nlu.DATA_DIR / name).examples]
    vectoriser = Vectoriser()
    vectoriser.fit(texts)
    assert vectoriser._cut_fn is not None
    for text in texts:
        assert vectoriser._cut_fn(text, HMM=False) == _cut()(text, HMM=False), text


def test_the_shipped_data_has_hundreds_of_examples_per_kind_in_three_scripts() -> None:
    from nlu.normalise import detect_lang

    examples = read_yaml(nlu.DATA_DIR / "kinds.yml").examples
    for kind in ("service_request", "complaint", "proposal"):
        texts = [e.text for e in examples if e.label == kind]
        langs = {lang: sum(detect_lang(t) == lang for t in texts) for lang in nlu.LANGS}
        assert len(texts) >= 200, kind
        assert min(langs.values()) >= 25, (kind, langs)


def test_no_held_out_message_is_trained_on() -> None:
    held_out = {json.loads(line)["text"]
                for line in (nlu.DATA_DIR / "heldout.jsonl").read_text(encoding="utf-8").splitlines()}
    trained = {e.text for name in ("kinds.yml", "categories.yml", "urgent.yml")
               for e in read_yaml(nlu.DATA_DIR / name).examples}
    assert len(held_out) >= 150
    assert not held_out & trained


def test_naive_bayes_scaling_is_folded_into_the_weights() -> None:
    """A head with the scaling scores a text as an SVM on the scaled features does."""
    import numpy as np
    import scipy.sparse as sp
    from sklearn.svm import LinearSVC

    from nlu.classifier import LinearHead

    X = sp.random(90, 40, density=0.2, random_state=0, format="csr")
    y = np.array(["a", "b", "c"] * 30)
    head = LinearHead(C=1.0, nb_smoothing=1.0, nb_power=0.5, folds=2).fit(X, y)
    present = (X > 0).astype(float)
    for k, label in enumerate(head.classes_):
        positive = y == label
        inside = 1 + np.asarray(present[positive].sum(axis=0)).ravel()
        outside = 1 + np.asarray(present[~positive].sum(axis=0)).ravel()
        ratio = np.log((inside / inside.sum()) / (outside / outside.sum()))
        scaled = X @ sp.diags(np.sign(ratio) * np.abs(ratio) ** 0.5)
        svm = LinearSVC(C=1.0, random_state=0).fit(scaled, positive)
        np.testing.assert_allclose(X @ head.coef_[:, k] + head.intercept_[k],
                                   svm.decision_function(scaled), rtol=1e-4, atol=1e-4)
