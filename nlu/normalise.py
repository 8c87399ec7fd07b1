"""Text normalisation shared by training and parsing: one script, one width, one case."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
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


def fold(text: str) -> str:
    """Full-width ASCII as half-width and Traditional as Simplified, keeping every offset: in the
    rare text where OpenCC's conversion changes the length, the conversion is left out."""
    half = half_width(text)
    simplified = to_simplified(half)
    return simplified if len(simplified) == len(half) else half


@dataclass(frozen=True)
class Reading:
    """One message read once: what classification, language detection and entity search need.

    `normalised` is the classifier's input (`normalise`), `lang` the script (`detect_lang`) and
    `folded` the first `window` characters as `fold` gives them, for entity search. Each of
    these folds widths and converts the script; doing it once per message instead of three
    times is a tenth of the parse of a long letter.
    """

    normalised: str
    lang: str
    folded: str


def read(text: str, window: int = MAX_CHARS) -> Reading:
    text = encodable(text)[:max(window, MAX_CHARS)]
    half = half_width(text)
    simplified = to_simplified(half)
    same_length = len(simplified) == len(half)
    prefix = half[:MAX_CHARS]
    prefix_simplified = simplified[:MAX_CHARS] if same_length else to_simplified(prefix)
    # NFKC would also fold the full widths; folding them first lets most texts skip NFKC.
    if unicodedata.is_normalized("NFKC", prefix):
        classified = prefix_simplified
    else:
        classified = to_simplified(unicodedata.normalize("NFKC", prefix))
    if _CJK.search(prefix):
        lang = "zh-Hant" if prefix_simplified != prefix else "zh-Hans"
    else:
        lang = "en" if _LATIN.search(prefix) else "zh-Hans"
    return Reading(normalised=_SPACES.sub(" ", classified.lower()).strip(), lang=lang,
                   folded=simplified if same_length else half)


def normalise(text: str) -> str:
    """Simplified script, half-width ASCII, lower case, single spaces; the first MAX_CHARS."""
    return read(text).normalised


def detect_lang(text: str) -> str:
    """"zh-Hant" when opencc would change the text, "en" when it is Latin without Chinese."""
    return read(text).lang
