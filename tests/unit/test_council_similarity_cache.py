"""The council's similarity scores from gram counts kept per text: the same figures, to the last
bit, as scikit-learn counting all the texts at once, whatever texts were seen before."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from handlers.council import proposals

# Simplified and Traditional, Latin, digits, punctuation and spaces (dropped by `normalise`),
# and a character beyond the Basic Multilingual Plane.
CHARS = list("建议增设健身器材小区东门开放老人锻炼樓道燈路灯 abAB1９，。！\t") + ["𠀀"]
TEXT = st.text(alphabet=st.sampled_from(CHARS), max_size=30)


def counted_at_once(texts: list[str], against: list[str]) -> list[list[float]]:
    """CountVectorizer over all the texts together, weighted and compared as TfidfVectorizer and
    cosine_similarity do (smooth idf, l2 rows): what the kept counts must reproduce."""
    from sklearn.feature_extraction.text import CountVectorizer

    docs = [proposals.normalise(x) or " " for x in [*texts, *against]]
    vectoriser = CountVectorizer(analyzer="char", ngram_range=(1, 2), lowercase=False)
    counts = vectoriser.fit_transform(docs)
    in_docs = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log((1 + len(docs)) / (1 + in_docs)) + 1
    weighted = counts.multiply(idf).tocsr()
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
    rows = weighted.multiply(1 / norms[:, None]).tocsr()
    return [[float(v) for v in row] for row in (rows[: len(texts)] @ rows[len(texts):].T).toarray()]


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(TEXT, min_size=1, max_size=4),
    against=st.lists(TEXT, min_size=1, max_size=10),
    shared=st.booleans(),
)
def test_scores_are_those_of_counting_all_the_texts_at_once(
    texts: list[str], against: list[str], shared: bool
) -> None:
    if shared:  # as `duplicates` compares a list with itself
        against = against + texts
    assert proposals.similarities(texts, against) == counted_at_once(texts, against)


@settings(max_examples=100, deadline=None)
@given(query=TEXT, kept=TEXT, before=TEXT, after=TEXT)
def test_an_edited_text_is_compared_as_it_reads_now(
    query: str, kept: str, before: str, after: str
) -> None:
    """The counts are kept by text: an edit is a new text, and the old one's counts go unused."""
    for edited in (before, after, before):
        expected = counted_at_once([query], [kept, edited])
        assert proposals.similarities([query], [kept, edited]) == expected


GRAM = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=2)


@given(first=GRAM, second=GRAM)
@example(first="a", second="a\x00")  # a character alone, and followed by the lowest code point
def test_gram_keys_sort_as_the_grams_do(first: str, second: str) -> None:
    """The vocabulary's order is the strings' order, as CountVectorizer numbers its columns."""
    a, b = proposals._gram_key(first), proposals._gram_key(second)
    assert (a < b, a == b) == (first < second, first == second)
