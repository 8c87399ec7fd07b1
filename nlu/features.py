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
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import pairwise, repeat
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp


Cut = Callable[..., list[str]]

# The characters of the normalised text whose n-grams are features, and the (shorter) prefix
# cut into words: segmentation is the slowest step, and a letter's opening carries its subject.
CHAR_CHARS = 2000
WORD_CHARS = 300
# Above this many distinct character n-grams a row is computed with numpy rather than in Python.
NUMPY_ROW_ABOVE = 300


def _import_jieba() -> Any:
    """jieba, imported on first use, with its invalid-escape warnings kept out of strict runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jieba

        jieba.setLogLevel(60)
    return jieba


@lru_cache(maxsize=1)
def _full_tokenizer() -> Any:
    """jieba's default tokenizer with its whole dictionary (used for training only)."""
    jieba = _import_jieba()
    jieba.initialize()
    return jieba.dt


def _cut() -> Cut:
    cut: Cut = _full_tokenizer().lcut
    return cut


def small_tokenizer(dictionary: Mapping[str, int], total: int) -> Any:
    """A jieba tokenizer knowing only `dictionary`, with the full dictionary's total.

    Loading jieba's whole dictionary takes a second or more; a model needs only the words its
    training texts were cut into. jieba picks the most probable path through the candidate
    words at each position, so dropping candidates that were never on a chosen path leaves the
    training texts' segmentation unchanged (tests/unit/test_nlu_training.py checks it).
    """
    jieba = _import_jieba()
    freq: dict[str, int] = {}
    for word, count in dictionary.items():
        freq[word] = count
        for end in range(1, len(word)):
            freq.setdefault(word[:end], 0)
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ, tokenizer.total, tokenizer.initialized = freq, total, True
    return tokenizer


def char_ngrams(text: str, n_max: int) -> Counter[str]:
    chars = text.replace(" ", "_")
    counts: Counter[str] = Counter(chars)
    for n in range(2, n_max + 1):
        counts.update(map("".join, zip(*(chars[k:] for k in range(n)))))
    counts.pop("_", None)
    return counts


def words(text: str, cut: Cut | None = None) -> Counter[str]:
    tokens = [t for t in (cut or _cut())(text, HMM=False) if t.strip()]
    counts: Counter[str] = Counter(tokens)
    # Word bigrams keep short negations and objects together: 没有 + 路灯, not + working.
    counts.update(a + "|" + b for a, b in pairwise(tokens))
    return counts


class Vectoriser:
    """Sublinear TF-IDF over three blocks (characters, words, opening); fitted state ends in `_`.

    `fit` keeps n-grams seen in at least `min_df` documents; `transform` returns rows whose
    character block and word block each have unit L2 norm, scaled by `word_weight` for words.
    """

    def __init__(self, char_max: int = 4, min_df: int = 2, word_weight: float = 1.0,
                 head_chars: int = 40, head_weight: float = 0.7,
                 max_features: int = 400_000, char_chars: int = CHAR_CHARS,
                 word_chars: int = WORD_CHARS) -> None:
        self.char_chars = char_chars
        self.word_chars = word_chars
        self.char_max = char_max
        self.min_df = min_df
        self.word_weight = word_weight
        self.head_chars = head_chars
        self.head_weight = head_weight
        self.max_features = max_features
        self._cut_fn: Cut | None = None

    def _blocks(self, text: str) -> tuple[Counter[str], Counter[str], Counter[str]]:
        chars = char_ngrams(text[:self.char_chars], self.char_max)
        if len(text) <= self.head_chars:
            head = Counter({k: v for k, v in chars.items() if len(k) <= 3})
        else:
            head = char_ngrams(text[:self.head_chars], 3)
        return chars, words(text[:self.word_chars], self._cut_fn), head

    def fit(self, texts: Iterable[str]) -> Vectoriser:
        self._cut_fn = None
        self._fit_blocks([self._blocks(t) for t in texts])
        return self

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """`fit` then `transform`, segmenting each text once."""
        self._cut_fn = None
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
        self._idf_list = idf
        self.n_features_ = len(idf)
        full = _full_tokenizer()
        self.dictionary_ = {w: full.FREQ[w] for w in sorted(word_df)
                            if "|" not in w and full.FREQ.get(w, 0) > 0}
        self.dictionary_total_ = int(full.total)
        self._cut_fn = small_tokenizer(self.dictionary_, self.dictionary_total_).lcut

    def _row(self, blocks: tuple[Counter[str], ...]) -> tuple[list[int], list[float]]:
        indices: list[int] = []
        values: list[float] = []
        idf = self._idf_list
        log = math.log
        for counts, vocab, weight in zip(blocks, (self.char_vocab_, self.word_vocab_, self.head_vocab_),
                                         (1.0, self.word_weight, self.head_weight)):
            found = [(j, c) for j, c in zip(map(vocab.get, counts), counts.values()) if j is not None]
            if not found:
                continue
            block = [(1.0 + log(c)) * idf[j] if c > 1 else idf[j] for j, c in found]
            norm = weight / math.sqrt(sum(v * v for v in block))
            indices.extend(j for j, _ in found)
            values.extend(v * norm for v in block)
        return indices, values

    def _row_arrays(self, blocks: tuple[Counter[str], ...]) -> tuple[np.ndarray, np.ndarray]:
        """`_row` with numpy arithmetic: the same figures, faster for a long text's thousands
        of n-grams (and slower for a chat message's hundred)."""
        all_indices, all_values = [], []
        for counts, vocab, weight in zip(blocks, (self.char_vocab_, self.word_vocab_, self.head_vocab_),
                                         (1.0, self.word_weight, self.head_weight)):
            n = len(counts)
            ids = np.fromiter(map(vocab.get, counts, repeat(-1, n)), dtype=np.int64, count=n)
            known = ids >= 0
            if not known.any():
                continue
            ids = ids[known]
            tf = np.fromiter(counts.values(), dtype=np.float64, count=n)[known]
            block = (1.0 + np.log(tf)) * self.idf_[ids]
            block *= weight / math.sqrt(float(block @ block))
            all_indices.append(ids)
            all_values.append(block)
        if not all_indices:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return np.concatenate(all_indices), np.concatenate(all_values)

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The non-zero feature indices and values of one normalised text."""
        blocks = self._blocks(text)
        if len(blocks[0]) > NUMPY_ROW_ABOVE:
            return self._row_arrays(blocks)
        indices, values = self._row(blocks)
        return np.asarray(indices, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self._matrix([self._blocks(t) for t in texts])

    def _matrix(self, all_blocks: Sequence[tuple[Counter[str], ...]]) -> sp.csr_matrix:
        import scipy.sparse as sp

        indptr = [0]
        all_indices: list[np.ndarray] = []
        all_values: list[np.ndarray] = []
        for blocks in all_blocks:
            if len(blocks[0]) > NUMPY_ROW_ABOVE:
                indices, values = self._row_arrays(blocks)
            else:
                row = self._row(blocks)
                indices = np.asarray(row[0], dtype=np.int64)
                values = np.asarray(row[1], dtype=np.float64)
            all_indices.append(indices)
            all_values.append(values)
            indptr.append(indptr[-1] + len(indices))
        empty = np.zeros(0)
        return sp.csr_matrix(
            (np.concatenate([empty, *all_values]),
             np.concatenate([empty.astype(np.int64), *all_indices]), np.asarray(indptr)),
            shape=(len(all_blocks), self.n_features_))

    def state(self) -> dict[str, object]:
        """The fitted state as plain data, for model files."""
        return {"params": {"char_max": self.char_max, "min_df": self.min_df,
                           "word_weight": self.word_weight, "head_chars": self.head_chars,
                           "head_weight": self.head_weight, "max_features": self.max_features,
                           "char_chars": self.char_chars, "word_chars": self.word_chars},
                "char_keys": list(self.char_vocab_), "word_keys": list(self.word_vocab_),
                "head_keys": list(self.head_vocab_),
                "dictionary": self.dictionary_, "dictionary_total": self.dictionary_total_,
                "idf": self.idf_}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Vectoriser:
        params = state["params"]
        assert isinstance(params, dict)
        # Models written before the prefixes were parameters used the whole normalised text.
        vec = cls(**{"char_chars": 2000, "word_chars": 2000, **params})
        char_keys = list(state["char_keys"])  # type: ignore[call-overload]
        word_keys = list(state["word_keys"])  # type: ignore[call-overload]
        head_keys = list(state["head_keys"])  # type: ignore[call-overload]
        vec.char_vocab_ = {k: i for i, k in enumerate(char_keys)}
        vec.word_vocab_ = {k: len(char_keys) + i for i, k in enumerate(word_keys)}
        offset = len(char_keys) + len(word_keys)
        vec.head_vocab_ = {k: offset + i for i, k in enumerate(head_keys)}
        vec.idf_ = np.asarray(state["idf"], dtype=np.float64)
        vec._idf_list = vec.idf_.tolist()
        vec.dictionary_ = dict(state["dictionary"])  # type: ignore[call-overload]
        vec.dictionary_total_ = int(state["dictionary_total"])  # type: ignore[call-overload]
        vec._cut_fn = small_tokenizer(vec.dictionary_, vec.dictionary_total_).lcut
        vec.n_features_ = len(vec.idf_)
        return vec
