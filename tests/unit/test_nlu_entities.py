"""Entities: addresses, phones, case numbers, dates and times, and the registry's gazetteer."""

from __future__ import annotations

import pytest

import nlu
from nlu.entities import EntityExtractor, chinese_number
from nlu.training_data import read_yaml

GAZETTEER = {
    "building": {"和平苑3栋": "ZN-HP-03", "HP-03": "ZN-HP-03", "Heping Garden Block 3": "ZN-HP-03"},
    "grid": {"和平苑网格": "ZN-G01"},
}


@pytest.fixture(scope="module")
def extractor() -> EntityExtractor:
    data = read_yaml(nlu.DATA_DIR / "entities.yml")
    return EntityExtractor(data.regexes, data.synonyms, data.lookups, GAZETTEER)


def found(extractor: EntityExtractor, text: str) -> list[tuple[str, str]]:
    return [(e.type, e.value) for e in extractor.extract(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("3栋2单元301楼道灯坏了", [("building", "3"), ("unit", "2"), ("room", "301")]),
    ("我住3-2-301", [("building", "3"), ("unit", "2"), ("room", "301")]),
    ("五栋三单元的电梯坏了", [("building", "5"), ("unit", "3")]),
    ("12號樓1單元502室漏水", [("building", "12"), ("unit", "1"), ("room", "502")]),
    ("Building 7, unit 2, room 1103 has no water", [("building", "7"), ("unit", "2"), ("room", "1103")]),
])
def test_building_unit_and_room_without_a_gazetteer(extractor: EntityExtractor, text: str,
                                                    expected: list[tuple[str, str]]) -> None:
    assert found(extractor, text) == expected


def test_entity_spans_point_into_the_original_text(extractor: EntityExtractor) -> None:
    text = "樓道燈壞了，3棟2單元301，電話138 1234 5678"
    for ent in extractor.extract(text):
        assert text[ent.start:ent.end] == ent.text


def test_building_named_in_the_registry_gets_its_code(extractor: EntityExtractor) -> None:
    ents = extractor.extract("和平苑3栋的电梯又坏了")
    assert [(e.type, e.value, e.text) for e in ents] == [("building", "ZN-HP-03", "和平苑3栋")]
    assert found(extractor, "hp-03 lift broken") == [("building", "ZN-HP-03")]
    assert found(extractor, "和平苑網格的網格員是誰") == [("grid", "ZN-G01")]


@pytest.mark.parametrize(("text", "phone"), [
    ("电话13812345678", "13812345678"),
    ("call me on +86 138-1234-5678", "13812345678"),
    ("座机0755-86001234找王姐", "075586001234"),
    ("電話：139 0000 1111", "13900001111"),
])
def test_phone_numbers_are_normalised_to_digits(extractor: EntityExtractor, text: str,
                                                phone: str) -> None:
    assert ("phone", phone) in found(extractor, text)


def test_case_number_is_found_in_any_case_and_upper_cased(extractor: EntityExtractor) -> None:
    assert found(extractor, "我的工单zn-20261121-0007怎么样了") == [
        ("case_number", "ZN-20261121-0007")]
    assert found(extractor, "status of ABCD-20260101-1234?") == [
        ("case_number", "ABCD-20260101-1234")]
    # Neither the date nor the serial of a case number is taken for a phone or a date.
    assert [t for t, _ in found(extractor, "HP-20261030-0012")] == ["case_number"]


@pytest.mark.parametrize(("text", "value"), [
    ("明天上午来修", "+1d morning"),
    ("3月5日下午3点半有空", "03-05 afternoon 15:30"),
    ("下周一晚上8点", "next mon evening 20:00"),
    ("2026年12月1日", "2026-12-01"),
    ("聽日上晝", "+1d"),
    ("can someone come tomorrow 9am", "+1d 09:00"),
    ("on March 5 at 2:30 pm", "03-05 14:30"),
])
def test_dates_and_times_get_a_normalised_value(extractor: EntityExtractor, text: str,
                                                value: str) -> None:
    assert ("datetime", value) in found(extractor, text)


def test_chinese_numerals() -> None:
    assert [chinese_number(t) for t in ("三", "十", "十二", "二十", "三十五", "两", "栋")] == [
        "3", "10", "12", "20", "35", "2", "栋"]


def test_load_passes_the_gazetteer_to_the_parser() -> None:
    clf = nlu.load(gazetteer=GAZETTEER)
    parsed = clf.parse("和平苑3栋2单元的楼道灯坏了，电话13812345678")
    assert parsed.entity("building") == "ZN-HP-03"
    assert parsed.entity("unit") == "2"
    assert parsed.entity("phone") == "13812345678"
    assert nlu.load().parse("和平苑3栋2单元的楼道灯坏了").entity("building") == "3"


def test_a_run_of_numerals_that_is_not_a_number_is_kept_as_written() -> None:
    assert [chinese_number(t) for t in ("十一二", "三十一二", "十十")] == ["十一二", "三十一二", "十十"]
    assert found_all("三十一二栋") == [("building", "十一二")]


def found_all(text: str) -> list[tuple[str, str]]:
    data = read_yaml(nlu.DATA_DIR / "entities.yml")
    return [(e.type, e.value) for e in
            EntityExtractor(data.regexes, data.synonyms, data.lookups).extract(text)]


GATED = [
    "3栋2单元301楼道灯坏了，电话13812345678，明天上午9点在家",
    "ZN-20261121-0007 到哪一步了", "ｚｎ－２０２６１１２１－０００７　明天下午３点",
    "Building 7, unit 2, room 1103, TOMORROW 9AM", "MARCH 5 at 2:30 PM, call 0755-86001234",
    "ſunday morning in room 1103",  # long s: the text is searched without gates
    "Kelvin ＫＫ 3-2-301", "下周一晚上7点半", "没有数字也没有日期的一段很长的话" * 30,
    "2026年11月21日、11月22日，12:30，14点，三点半" * 5,
]


@pytest.mark.parametrize("text", GATED)
def test_gates_never_change_what_is_found(extractor: EntityExtractor, text: str) -> None:
    ungated = EntityExtractor.__new__(EntityExtractor)
    ungated.__dict__.update(extractor.__dict__)
    ungated._gates = [() for _ in extractor.regexes]
    assert extractor.extract(text) == ungated.extract(text)
