"""Sparse TF-IDF features: character 1-4-grams, jieba words and the opening's character n-grams.

Each block is L2-normalised on its own. The opening block repeats the character n-grams of
the first `head_chars` characters: residents say what they want first (a subject line, "楼道灯
坏了，……"), and the rest is story. For chat-length messages it is the whole message.

The vectoriser is our own rather than scikit-learn's so that one message is turned into
features with plain dict look-ups (tens of microseconds), and every head shares one
vocabulary: parsing costs one featurisation and one small matrix product.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import numpy as np
import scipy.sparse as sp


@lru_cache(maxsize=1)
def _cut() -> Callable[..., list[str]]:
    """jieba's cutter, imported on first use: `import nlu` stays cheap for code that only
    needs the value types, and jieba's invalid-escape warnings stay out of strict test runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jieba

        jieba.setLogLevel(60)
        jieba.initialize()
    cut: Callable[..., list[str]] = jieba.lcut
    return cut


def char_ngrams(text: str, n_max: int) -> Counter[str]:
    chars = text.replace(" ", "_")
    counts: Counter[str] = Counter(chars)
    for n in range(2, n_max + 1):
        counts.update(map("".join, zip(*(chars[k:] for k in range(n)))))
    counts.pop("_", None)
    return counts


def words(text: str) -> Counter[str]:
    tokens = [t for t in _cut()(text, HMM=False) if t.strip()]
    counts: Counter[str] = Counter(tokens)
    # Word bigrams keep short negations and objects together: 没有 + 路灯, not + working.
    counts.update(a + "|" + b for a, b in zip(tokens, tokens[1:]))
    return counts


class Vectoriser:
    """Sublinear TF-IDF over two blocks (characters, words); fitted state ends in `_`.

    `fit` keeps n-grams seen in at least `min_df` documents; `transform` returns rows whose
    character block and word block each have unit L2 norm, scaled by `word_weight` for words.
    """

    def __init__(self, char_max: int = 4, min_df: int = 2, word_weight: float = 1.0,
                 head_chars: int = 40, head_weight: float = 0.5,
                 max_features: int = 400_000) -> None:
        self.char_max = char_max
        self.min_df = min_df
        self.word_weight = word_weight
        self.head_chars = head_chars
        self.head_weight = head_weight
        self.max_features = max_features

    def _blocks(self, text: str) -> tuple[Counter[str], Counter[str], Counter[str]]:
        return (char_ngrams(text, self.char_max), words(text),
                char_ngrams(text[:self.head_chars], 3))

    def fit(self, texts: Iterable[str]) -> Vectoriser:
        self._fit_blocks([self._blocks(t) for t in texts])
        return self

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """`fit` then `transform`, segmenting each text once."""
        blocks = [self._blocks(t) for t in texts]
        self._fit_blocks(blocks)
        return self._matrix(blocks)

    def _fit_blocks(self, all_blocks: Sequence[tuple[Counter[str], ...]]) -> None:
        char_df: Counter[str] = Counter()
        word_df: Counter[str] = Counter()
        head_df: Counter[str] = Counter()
        n_docs = 0
        for chars, toks, head in all_blocks:
            char_df.update(chars.keys())
            word_df.update(toks.keys())
            head_df.update(head.keys())
            n_docs += 1
        min_df = self.min_df if n_docs >= 50 else 1

        def keep(df: Counter[str], limit: int) -> list[str]:
            kept = [(-c, k) for k, c in df.items() if c >= min_df]
            kept.sort()
            return [k for _, k in kept[:limit]]

        char_keys = keep(char_df, self.max_features)
        word_keys = keep(word_df, self.max_features // 2)
        self.char_vocab_ = {k: i for i, k in enumerate(char_keys)}
        offset = len(char_keys)
        self.word_vocab_ = {k: offset + i for i, k in enumerate(word_keys)}
        head_keys = keep(head_df, self.max_features // 4)
        offset += len(word_keys)
        self.head_vocab_ = {k: offset + i for i, k in enumerate(head_keys)}
        idf = [math.log((1 + n_docs) / (1 + char_df[k])) + 1 for k in char_keys]
        idf += [math.log((1 + n_docs) / (1 + word_df[k])) + 1 for k in word_keys]
        idf += [math.log((1 + n_docs) / (1 + head_df[k])) + 1 for k in head_keys]
        self.idf_ = np.asarray(idf, dtype=np.float64)
        self.n_features_ = len(idf)

    def _row(self, blocks: tuple[Counter[str], ...]) -> tuple[list[int], list[float]]:
        chars, toks, head = blocks
        indices: list[int] = []
        values: list[float] = []
        idf = self.idf_
        for counts, vocab, weight in ((chars, self.char_vocab_, 1.0),
                                      (toks, self.word_vocab_, self.word_weight),
                                      (head, self.head_vocab_, self.head_weight)):
            start = len(indices)
            for key, count in counts.items():
                j = vocab.get(key)
                if j is not None:
                    indices.append(j)
                    values.append((1.0 + math.log(count)) * idf[j])
            block = values[start:]
            if block:
                norm = weight / math.sqrt(sum(v * v for v in block))
                values[start:] = [v * norm for v in block]
        return indices, values

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The non-zero feature indices and values of one normalised text."""
        indices, values = self._row(self._blocks(text))
        return np.asarray(indices, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self._matrix([self._blocks(t) for t in texts])

    def _matrix(self, all_blocks: Sequence[tuple[Counter[str], ...]]) -> sp.csr_matrix:
        indptr = [0]
        all_indices: list[int] = []
        all_values: list[float] = []
        for blocks in all_blocks:
            indices, values = self._row(blocks)
            all_indices.extend(indices)
            all_values.extend(values)
            indptr.append(len(all_indices))
        return sp.csr_matrix(
            (np.asarray(all_values), np.asarray(all_indices, dtype=np.int64), np.asarray(indptr)),
            shape=(len(all_blocks), self.n_features_))

    def state(self) -> dict[str, object]:
        """The fitted state as plain data, for model files."""
        return {"params": {"char_max": self.char_max, "min_df": self.min_df,
                           "word_weight": self.word_weight, "head_chars": self.head_chars,
                           "head_weight": self.head_weight, "max_features": self.max_features},
                "char_keys": list(self.char_vocab_), "word_keys": list(self.word_vocab_),
                "head_keys": list(self.head_vocab_),
                "idf": self.idf_}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Vectoriser:
        params = state["params"]
        assert isinstance(params, dict)
        vec = cls(**params)
        char_keys = list(state["char_keys"])  # type: ignore[call-overload]
        word_keys = list(state["word_keys"])  # type: ignore[call-overload]
        head_keys = list(state["head_keys"])  # type: ignore[call-overload]
        vec.char_vocab_ = {k: i for i, k in enumerate(char_keys)}
        vec.word_vocab_ = {k: len(char_keys) + i for i, k in enumerate(word_keys)}
        offset = len(char_keys) + len(word_keys)
        vec.head_vocab_ = {k: offset + i for i, k in enumerate(head_keys)}
        vec.idf_ = np.asarray(state["idf"], dtype=np.float64)
        vec.n_features_ = len(vec.idf_)
        return vec
