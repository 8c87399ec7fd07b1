"""The council's pure parts: titles, similarity, and the printable paper."""

from __future__ import annotations

from pathlib import Path

import docx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.council import proposals
from handlers.council.export import Paper, to_markdown, write_docx


def test_title_is_the_first_clause_without_the_lead_in() -> None:
    assert (
        proposals.derive_title("我建议，在3栋旁边增设一组健身器材，方便老人锻炼")
        == "在3栋旁边增设一组健身器材"
    )
    assert (
        proposals.derive_title("I suggest that we plant more trees. The park is bare.")
        == "we plant more trees"
    )
    assert len(proposals.derive_title("建议" + "很长的标题" * 10)) == proposals.TITLE_CHARS
    assert proposals.derive_title("建议") == "建议"


def test_similar_proposals_read_alike_in_either_script() -> None:
    kept = "建议在中南小区3栋旁边增设一组健身器材，方便老人锻炼"
    scores = proposals.similarities(
        [
            "我建议小区里增设健身器材，老人没地方锻炼",
            "我建議小區裡增設健身器材，老人沒地方鍛煉",
            "建议把小区东门改为24小时开放",
        ],
        [kept],
    )
    assert scores[0][0] >= proposals.SIMILAR_ABOVE
    assert scores[1][0] >= proposals.SIMILAR_ABOVE
    assert scores[2][0] < proposals.SIMILAR_ABOVE


PROPOSAL_TEXT = st.text(alphabet=st.sampled_from(list("建议增设健身器材小区东门开放老人锻炼樓道燈 ab1，。")),
                        max_size=30)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(PROPOSAL_TEXT, min_size=1, max_size=3),
       against=st.lists(PROPOSAL_TEXT, min_size=1, max_size=8))
def test_similarity_scores_are_scikit_learns_tfidf_cosine(texts: list[str], against: list[str]) -> None:
    """The gram counts kept per text, weighted here, give scikit-learn's TfidfVectorizer's and
    cosine_similarity's scores over the same texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    docs = [proposals.normalise(x) or " " for x in texts + against]
    vectors = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), lowercase=False).fit_transform(docs)
    expected = cosine_similarity(vectors[: len(texts)], vectors[len(texts):])
    found = proposals.similarities(texts, against)
    assert [v for row in found for v in row] == pytest.approx(expected.ravel().tolist(), abs=1e-9)
    assert [len(row) for row in found] == [len(against)] * len(texts)


def _paper() -> Paper:
    return Paper(
        title="中南社区居民议事会 意见收集会 议程",
        meta=("时间：2026年11月28日 19:00", "地点：活动室"),
        headers=("序号", "编号", "议题"),
        rows=(("1", "ZN-P-2026-0001", "增设健身器材|一组"),),
        sections=(("议题内容", ("ZN-P-2026-0001 增设健身器材：方便老人锻炼",)),),
    )


def test_markdown_paper_has_title_table_and_escaped_cells() -> None:
    text = to_markdown(_paper())
    assert text.startswith("# 中南社区居民议事会 意见收集会 议程\n")
    assert "| 1 | ZN-P-2026-0001 | 增设健身器材\\|一组 |" in text
    assert "## 议题内容" in text


def test_docx_paper_opens_with_its_heading_and_table(tmp_path: Path) -> None:
    path = write_docx(_paper(), tmp_path / "out" / "agenda.docx")
    document = docx.Document(str(path))
    assert document.paragraphs[0].text == "中南社区居民议事会 意见收集会 议程"
    assert [c.text for c in document.tables[0].rows[1].cells] == [
        "1",
        "ZN-P-2026-0001",
        "增设健身器材|一组",
    ]
