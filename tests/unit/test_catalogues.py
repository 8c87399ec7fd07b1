"""Every message exists in every language, with the same placeholders."""

from __future__ import annotations

import string

import pytest

from handlers.replies import LANGUAGES, catalogue, pick_language, say


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "zh-Hans"])
def test_same_keys_and_placeholders_as_simplified_chinese(lang: str) -> None:
    base, other = catalogue("zh-Hans"), catalogue(lang)
    assert sorted(set(base) ^ set(other)) == []
    differing = [k for k in base if placeholders(base[k]) != placeholders(other[k])]
    assert differing == []


def test_language_is_picked_from_platform_codes() -> None:
    assert pick_language("zh-hant") == "zh-Hant"
    assert pick_language("zh-TW") == "zh-Hant"
    assert pick_language("en-US") == "en"
    assert pick_language(None, "zh-hans") == "zh-Hans"
    assert pick_language("fr") == "zh-Hans"


def test_traditional_catalogue_is_traditional() -> None:
    assert "負責人" in say("zh-Hant", "case.opened", number="ZN-1", name="王", post="p", ack_due="a",
                           reply_due="b", resolve_due="c")
