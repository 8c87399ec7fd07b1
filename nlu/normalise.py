"""Text normalisation shared by training and parsing: one script, one width, one case."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

# Messages are truncated to this many characters before classification; a 100 KB paste is
# classified by its opening, which is where residents state what they want.
MAX_CHARS = 2000

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_SPACES = re.compile(r"\s+")
_WIDE = re.compile("[\uff01-\uff5e\u3000]")
# Full-width ASCII (Ｕ+FF01..FF5E) sits 0xFEE0 above its half-width form.
_WIDE_OFFSET = 0xFEE0


def _half(match: re.Match[str]) -> str:
    char = match.group()
    return " " if char == "\u3000" else chr(ord(char) - _WIDE_OFFSET)


def half_width(text: str) -> str:
    """Full-width ASCII and the ideographic space as their half-width forms; offsets kept.

    A Chinese letter's punctuation (，？！：) is full-width: substituting the few such
    characters is faster than translating every character.
    """
    return _WIDE.sub(_half, text)


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    return str(_t2s().convert(text))


def encodable(text: str) -> str:
    """`text` with any lone surrogate (half of a JSON "\\ud83d\\ude00" escape) as "?", offsets
    kept: no encoder, OpenCC's included, accepts one."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def normalise(text: str) -> str:
    """Simplified script, half-width ASCII, lower case, single spaces."""
    text = encodable(text)
    # NFKC would also fold the full widths; folding them first lets most texts skip NFKC.
    text = half_width(text[:MAX_CHARS])
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = to_simplified(text).lower()
    return _SPACES.sub(" ", text).strip()


def detect_lang(text: str) -> str:
    """"zh-Hant" when opencc would change the text, "en" when it is Latin without Chinese."""
    sample = text[:MAX_CHARS]
    if _CJK.search(sample):
        return "zh-Hant" if to_simplified(sample) != sample else "zh-Hans"
    if _LATIN.search(sample):
        return "en"
    return "zh-Hans"
