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


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    return str(_t2s().convert(text))


def normalise(text: str) -> str:
    """Simplified script, half-width ASCII, lower case, single spaces."""
    text = unicodedata.normalize("NFKC", text[:MAX_CHARS])
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
