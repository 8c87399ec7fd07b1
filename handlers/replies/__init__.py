"""Message catalogues: what griddesk says, in zh-Hans (default), zh-Hant and en.

Each language is a folder of YAML files, one per workflow (cases.yaml, council.yaml …); their
keys are merged. `say(lang, key, **values)` formats a message; a key missing in a language falls
back to zh-Hans, and a key missing everywhere is a programming error (KeyError).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

LANGUAGES = ("zh-Hans", "zh-Hant", "en")
DEFAULT = "zh-Hans"
_HERE = Path(__file__).parent


@cache
def catalogue(lang: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted((_HERE / lang).glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, value in data.items():
            if key in merged:
                raise ValueError(f"{path}: key {key!r} is defined twice in {lang}")
            merged[key] = str(value)
    return merged


def pick_language(*candidates: str | None) -> str:
    """The first supported language among the candidates (e.g. "zh-hant", "en-US", "zh")."""
    for cand in candidates:
        if not cand:
            continue
        low = cand.lower().replace("_", "-")
        if low.startswith("en"):
            return "en"
        if low in ("zh-hant", "zh-tw", "zh-hk", "zh-mo") or low.startswith("zh-hant"):
            return "zh-Hant"
        if low.startswith("zh"):
            return "zh-Hans"
    return DEFAULT


def say(lang: str, key: str, **values: object) -> str:
    lang = lang if lang in LANGUAGES else DEFAULT
    template = catalogue(lang).get(key)
    if template is None:
        template = catalogue(DEFAULT)[key]
    return template.format(**values).strip()


_WEEKDAYS = {
    "zh-Hans": "一二三四五六日",
    "zh-Hant": "一二三四五六日",
}


def when(lang: str, utc: dt.datetime, timezone: str = "Asia/Shanghai") -> str:
    """A deadline as residents read it, in the community's time zone."""
    if utc.tzinfo is None:
        utc = utc.replace(tzinfo=dt.UTC)
    local = utc.astimezone(ZoneInfo(timezone))
    if lang == "en":
        return local.strftime("%a %d %b %H:%M")
    return f"{local.month}月{local.day}日(周{_WEEKDAYS[lang if lang in _WEEKDAYS else DEFAULT][local.weekday()]}) {local:%H:%M}"
