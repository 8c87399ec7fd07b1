"""Sparse TF-IDF features: character 1-4-grams, jieba words and the opening's character n-grams.

Each block is L2-normalised on its own. The opening block repeats the character n-grams of
the first `head_chars` characters: residents say what they want first (a subject line, "楼道灯
坏了，……"), and the rest is story. For chat-length messages it is the whole message.

Character n-grams are found by hash, not by string: a text becomes an array of code points,
each n-gram a 64-bit polynomial hash computed by numpy, and a bucketed table of the
vocabulary's hashes (`NgramColumns`) gives their columns. A long letter's thousands of n-grams
thus cost a few array operations instead of thousands of dict look-ups and string slices, and
a batch of texts goes through each step at once. Training counts document frequencies on the
n-gram strings themselves (`char_ngrams`), so the vocabulary in the model files stays
readable; the hashes are recomputed from it at load.

One message at a time (`transform_one`, once per chat message), numpy's cost per call
outweighs the work, so texts up to `ONE_TEXT_CHARS` characters take a plain-Python path:
n-grams looked up by string, and the same arithmetic in the same order. The row is the batch path's to the bit, unless one of the text's n-grams shares a
vocabulary key's 64-bit hash without being that key, which the hash path counts as the key.

Words come from jieba on the first `word_chars` characters only, at a lower weight:
segmentation is the slowest step per character, and on long letters words past the opening
added nothing the character n-grams did not already carry (nlu/README.md, "Figures").

Every head shares one vocabulary: parsing costs one featurisation and one small matrix product.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp


Cut = Callable[..., list[str]]

# The characters of the normalised text whose n-grams are features, and the (shorter) prefix
# cut into words.
CHAR_CHARS = 2000
WORD_CHARS = 40

# The longest text `transform_one` featurises in plain Python. Its cost grows faster with
# length than the batch path's, which costs more per call: the two break even at 80 to 100
# characters of Chinese or English (nlu/data's held-out messages run together).
ONE_TEXT_CHARS = 100

# The polynomial hash of an n-gram's code points, modulo 2**64 (numpy arrays wrap without
# warning): an odd multiplier with well-mixed bits, a salt per length so that "ab" and "\x01ab"
# differ, and a final multiplication by 2**64 / golden ratio that carries every bit into the
# top bits `NgramColumns` buckets by. Collisions within a vocabulary are dropped at training
# (`without_collisions`).
_MULTIPLIER = np.uint64(0xD6E8FEB86659FD93)
_LENGTH_SALT = [np.uint64(n * 0xC2B2AE3D27D4EB4F % 2**64) for n in range(8)]
_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)
_SPACE_MARK = ord("_")


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
    """The character 1..n_max-grams of `text` as strings, spaces shown as "_" (for training,
    and for one message at a time: `Vectoriser.transform_one`)."""
    chars = text.replace(" ", "_")
    counts = Counter([chars[i:i + n] for n in range(1, n_max + 1) for i in range(len(chars) - n + 1)])
    counts.pop("_", None)
    return counts


def word_keys(text: str, cut: Cut | None = None) -> list[str]:
    """jieba's words of `text` and their bigrams, once per occurrence."""
    tokens = [t for t in (cut or _cut())(text, HMM=False) if t.strip()]
    # Word bigrams keep short negations and objects together: 没有 + 路灯, not + working.
    return tokens + [a + "|" + b for a, b in pairwise(tokens)]


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def _finish(polynomial: np.ndarray, n: int) -> np.ndarray:
    """The hashes of n-grams from their polynomials c0*M**(n-1) + ... + c(n-1)."""
    return (polynomial + _LENGTH_SALT[n]) * _FIBONACCI


def key_hashes(keys: Sequence[str]) -> np.ndarray:
    """The hash of each n-gram string, as `text_ngram_hashes` computes it inside a text."""
    hashes = np.zeros(len(keys), dtype=np.uint64)
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    for n in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == n)
        codes = _code_points("".join([keys[i] for i in rows.tolist()])).reshape(len(rows), n)
        polynomial = codes[:, 0].copy()
        for k in range(1, n):
            polynomial *= _MULTIPLIER
            polynomial += codes[:, k]
        hashes[rows] = _finish(polynomial, n)
    return hashes


def text_ngram_hashes(text: str, n_max: int, head_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """The hashes of `char_ngrams(text, n_max)`'s n-grams, one per occurrence, and of
    `char_ngrams(text[:head_chars], 3)`'s."""
    codes = _code_points(text.replace(" ", "_"))
    polynomial = codes
    every, head = [], []
    for n in range(1, min(n_max, len(codes)) + 1):
        if n > 1:  # the n-gram at i is the (n-1)-gram at i, one character longer
            polynomial = polynomial[:-1] * _MULTIPLIER + codes[n - 1:]
        hashes = _finish(polynomial, n)
        if n == 1:
            hashes = hashes[codes != _SPACE_MARK]
            head.append(hashes[:np.count_nonzero(codes[:head_chars] != _SPACE_MARK)])
        elif n <= 3:
            head.append(hashes[:max(head_chars - n + 1, 0)])
        every.append(hashes)
    empty = np.zeros(0, dtype=np.uint64)
    return np.concatenate([empty, *every]), np.concatenate([empty, *head])


class NgramColumns:
    """The columns of a block's character n-grams, looked up by hash in a bucketed table.

    Each hash's bucket is its top bits; keys are sorted by hash, hence by bucket, and
    `_starts[b]` is where bucket b's keys begin. There are about twice as many buckets as keys,
    so no bucket holds more than `len(_window)` keys (a handful), and a look-up is a few array
    operations for all the n-grams of a batch of texts. A key past its bucket's end belongs to
    another bucket and so never equals the hash: windows may overrun their bucket.
    """

    def __init__(self, keys: Sequence[str], offset: int) -> None:
        hashes = key_hashes(keys)
        order = np.argsort(hashes)
        if np.any(hashes[order[1:]] == hashes[order[:-1]]):
            raise ValueError("two n-grams share a hash; drop one with `without_collisions`")
        bits = max(int(2 * len(keys)).bit_length(), 1)
        self._shift = np.uint64(64 - bits)
        bucket = self._bucket(hashes)
        sizes = np.bincount(bucket, minlength=1 << bits)
        self._window = np.arange(max(int(sizes.max()), 1))
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        # Padded so that a window starting at the last key stays inside the arrays.
        padding = len(self._window)
        self._hashes = np.concatenate([hashes[order], np.zeros(padding, dtype=np.uint64)])
        self._columns = np.concatenate([order + offset, np.full(padding, -1)]).astype(np.int64)

    def _bucket(self, hashes: np.ndarray) -> np.ndarray:
        return (hashes >> self._shift).astype(np.int64)

    def find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of `hashes` are known (their positions) and their columns.

        Most buckets hold at most one key, so the first key of each hash's bucket settles most
        hashes; the rest of the window is searched only for hashes whose bucket holds more.
        """
        bucket = self._bucket(hashes)
        first, end = self._starts[bucket], self._starts[bucket + 1]
        hit = self._hashes[first] == hashes
        which = np.flatnonzero(hit)
        columns = self._columns[first[which]]
        more = np.flatnonzero(~hit & (end - first > 1))
        if len(more):
            # One row per further position in the window: numpy's inner loops run along hashes.
            slots = first[more] + self._window[1:, None]
            where, among = np.nonzero(self._hashes[slots] == hashes[more])
            which = np.concatenate([which, more[among]])
            columns = np.concatenate([columns, self._columns[slots[where, among]]])
        return which, columns


def _row_of(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The row of each element of `np.concatenate(parts)`: parts[i]'s elements are row i's."""
    return np.repeat(np.arange(len(parts)), [len(p) for p in parts])


def without_collisions(keys: list[str]) -> list[str]:
    """`keys` less any that share a hash with an earlier (more frequent) one: a 4-gram's hash
    wraps, so two may meet, though in practice none do."""
    _, first = np.unique(key_hashes(keys), return_index=True)
    return keys if len(first) == len(keys) else [keys[i] for i in sorted(first.tolist())]


def _by_column(columns: Mapping[str, int], counts: Mapping[str, int]) -> dict[int, int]:
    """`counts` by column, less the keys without one (no two keys share a column)."""
    by_column = dict(zip(map(columns.get, counts), counts.values()))
    by_column.pop(None, None)
    return cast("dict[int, int]", by_column)


class Vectoriser:
    """Sublinear TF-IDF over three blocks (characters, words, opening); fitted state ends in `_`.

    `fit` keeps n-grams seen in at least `min_df` documents, the `max_features` most frequent;
    `transform` returns rows whose blocks each have unit L2 norm, times `word_weight` for words
    and `head_weight` for the opening.
    """

    def __init__(self, char_max: int = 4, min_df: int = 2, word_weight: float = 0.4,
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

    def _string_blocks(self, text: str) -> tuple[Counter[str], Counter[str], Counter[str]]:
        return (char_ngrams(text[:self.char_chars], self.char_max),
                Counter(word_keys(text[:self.word_chars], self._cut_fn)),
                char_ngrams(text[:self.head_chars], 3))

    def fit(self, texts: Iterable[str]) -> Vectoriser:
        self._cut_fn = None
        char_df: Counter[str] = Counter()
        word_df: Counter[str] = Counter()
        head_df: Counter[str] = Counter()
        n_docs = 0
        for text in texts:
            chars, toks, head = self._string_blocks(text)
            char_df.update(chars.keys())
            word_df.update(toks.keys())
            head_df.update(head.keys())
            n_docs += 1
        min_df = self.min_df if n_docs >= 50 else 1

        def keep(df: Counter[str], limit: int) -> list[str]:
            kept = [(-c, k) for k, c in df.items() if c >= min_df]
            kept.sort()
            return [k for _, k in kept[:limit]]

        self.char_keys_ = without_collisions(keep(char_df, self.max_features))
        self.word_keys_ = keep(word_df, self.max_features // 2)
        self.head_keys_ = without_collisions(keep(head_df, self.max_features // 4))
        idf = [math.log((1 + n_docs) / (1 + df[k])) + 1
               for df, keys in ((char_df, self.char_keys_), (word_df, self.word_keys_),
                                (head_df, self.head_keys_))
               for k in keys]
        full = _full_tokenizer()
        dictionary = {w: full.FREQ[w] for w in sorted(word_df)
                      if "|" not in w and full.FREQ.get(w, 0) > 0}
        self._set_state(np.asarray(idf, dtype=np.float64), dictionary, int(full.total))
        return self

    def _set_state(self, idf: np.ndarray, dictionary: dict[str, int], total: int) -> None:
        """Columns, idf and word segmenter from the fitted keys (after `fit` or from files)."""
        n_char, n_word = len(self.char_keys_), len(self.word_keys_)
        self.char_columns_ = NgramColumns(self.char_keys_, 0)
        self.word_vocab_ = {k: n_char + i for i, k in enumerate(self.word_keys_)}
        self.head_columns_ = NgramColumns(self.head_keys_, n_char + n_word)
        self._block_ends = np.asarray([n_char, n_char + n_word])
        self._block_weights = np.asarray([1.0, self.word_weight, self.head_weight])
        self.idf_ = idf
        self.n_features_ = len(idf)
        # By string, for `transform_one`: the hash tables' columns, as the tables hold exactly
        # these keys (`fit` dropped colliding ones). Like the hash path, they leave out the
        # 1-gram "_" and opening n-grams longer than the batch path makes.
        head_max = min(self.char_max, 3)
        self._char_by_string = {k: i for i, k in enumerate(self.char_keys_) if k != "_"}
        self._head_by_string = {k: n_char + n_word + i for i, k in enumerate(self.head_keys_)
                                if k != "_" and len(k) <= head_max}
        self._idf_floats: list[float] = idf.tolist()
        # 1 + log(count) by count as numpy computes it, which `math.log` need not match to the
        # last bit on every machine. No key occurs more often than the text has characters.
        self._log_tf: list[float] = [
            math.nan, *(1.0 + np.log(np.arange(1, ONE_TEXT_CHARS + 1))).tolist()]
        self.dictionary_ = dictionary
        self.dictionary_total_ = total
        self._cut_fn = small_tokenizer(dictionary, total).lcut

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.fit(texts).transform(texts)

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The non-zero feature columns and values of one normalised text: `transform`'s row.

        Up to `ONE_TEXT_CHARS` characters in plain Python (see the module docstring); the
        row is `_entries`' to the bit.
        """
        text = text[:self.char_chars]
        if len(text) > ONE_TEXT_CHARS:
            return self._entries([text])[1:]
        grams = char_ngrams(text, self.char_max)
        # A short text is all opening; its 4-grams are no head key.
        head = grams if len(text) <= self.head_chars else char_ngrams(text[:self.head_chars], 3)
        words = Counter(word_keys(text[:self.word_chars], self._cut_fn))
        blocks = ((_by_column(self._char_by_string, grams), 1.0),
                  (_by_column(self.word_vocab_, words), self.word_weight),
                  (_by_column(self._head_by_string, head), self.head_weight))
        columns: list[int] = []
        values: list[float] = []
        log_tf, idf = self._log_tf, self._idf_floats
        for counts, weight in blocks:
            if not counts:
                continue
            order = sorted(counts)
            block = [log_tf[counts[j]] * idf[j] for j in order]
            # Summed left to right from 0.0 as np.bincount does (`sum` compensates from Python
            # 3.12), and scaled by weight / norm as `_entries` is, for the same last bits.
            square_sum = 0.0
            for v in block:
                square_sum += v * v
            scale = weight / math.sqrt(square_sum)
            columns += order
            values += [v * scale for v in block]
        return np.array(columns, dtype=np.int64), np.array(values, dtype=np.float64)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        import scipy.sparse as sp

        rows, columns, values = self._entries(texts)
        indptr = np.searchsorted(rows, np.arange(len(texts) + 1))
        return sp.csr_matrix((values, columns, indptr), shape=(len(texts), self.n_features_))

    def _entries(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and value of every non-zero feature of `texts`, sorted by row and column.

        The whole batch goes through each step at once: one look-up per n-gram block, one count
        of (row, column) pairs, one normalisation per (row, block).
        """
        char_hashes, head_hashes, word_columns = [], [], []
        for text in texts:
            chars, head = text_ngram_hashes(text[:self.char_chars], self.char_max, self.head_chars)
            char_hashes.append(chars)
            head_hashes.append(head)
            word_columns.append(np.fromiter(
                (j for j in map(self.word_vocab_.get,
                                word_keys(text[:self.word_chars], self._cut_fn)) if j is not None),
                dtype=np.int64))
        found = []
        for table, hashes in ((self.char_columns_, char_hashes), (self.head_columns_, head_hashes)):
            which, columns = table.find(np.concatenate(hashes))
            found.append((_row_of(hashes)[which], columns))
        found.append((_row_of(word_columns), np.concatenate(word_columns)))
        # Each (row, column) pair once, with its count: rows * width + column is unique and
        # sorts by row, then column. In 32 bits when a batch's keys fit: the sort, the costliest
        # step of a batch, takes half the time.
        width = self.n_features_
        keys = np.concatenate([r * width + c for r, c in found])
        if len(texts) * width < 2**32:
            keys = keys.astype(np.uint32)
        pairs, counts = np.unique(keys, return_counts=True)
        rows, columns = np.divmod(pairs.astype(np.int64), width)
        values = (1.0 + np.log(counts)) * self.idf_[columns]
        block = np.searchsorted(self._block_ends, columns, side="right")
        group = rows * 3 + block
        norms = np.sqrt(np.bincount(group, weights=values * values))
        values *= self._block_weights[block] / norms[group]
        return rows, columns, values

    def state(self) -> dict[str, object]:
        """The fitted state as plain data, for model files."""
        return {"params": {"char_max": self.char_max, "min_df": self.min_df,
                           "word_weight": self.word_weight, "head_chars": self.head_chars,
                           "head_weight": self.head_weight, "max_features": self.max_features,
                           "char_chars": self.char_chars, "word_chars": self.word_chars},
                "char_keys": self.char_keys_, "word_keys": self.word_keys_,
                "head_keys": self.head_keys_,
                "dictionary": self.dictionary_, "dictionary_total": self.dictionary_total_,
                "idf": self.idf_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Vectoriser:
        vec = cls(**state["params"])
        vec.char_keys_ = list(state["char_keys"])
        vec.word_keys_ = list(state["word_keys"])
        vec.head_keys_ = list(state["head_keys"])
        vec._set_state(np.asarray(state["idf"], dtype=np.float64), dict(state["dictionary"]),
                       int(state["dictionary_total"]))
        return vec
