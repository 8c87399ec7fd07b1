"""A district registry file for tests: the example community (中南社区, ZN) and a second one
(西湖社区, XH) copied from it, as a district that reuses its post names would write it.

The second community keeps every post code (`front_desk`, `mediation`, `director`,
`secretary`, `service`, …) and its categories; its committees, grids, buildings and people get
codes of their own (`XH-…`, `xh_…`), and its people have no chat accounts yet.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import EXAMPLE

SECOND = "XH"
SECOND_NAME = "西湖社区"


def person_id(code: str) -> str:
    """A person's id in the second community."""
    return f"xh_{code}"


def _second_community(first: dict[str, Any]) -> dict[str, Any]:
    com = copy.deepcopy(first)
    com["code"], com["name"] = SECOND, SECOND_NAME
    if com.get("council"):
        com["council"]["name"] = f"{SECOND_NAME}居民议事会"
    for committee in com["committees"]:
        committee["code"] = committee["code"].replace("ZN-", "XH-")
        committee["name"] = committee["name"].replace("中南", "西湖")
        for grid in committee["grids"]:
            grid["code"] = grid["code"].replace("ZN-", "XH-")
            for building in grid["buildings"]:
                building["code"] = building["code"].replace("ZN-", "XH-")
                building["name"] = building["name"].replace("中南", "西湖")
    for person in com["people"]:
        person["id"] = person_id(person["id"])
        person.pop("telegram_id", None)
        person.pop("wechat_openid", None)
        person.pop("wecom_userid", None)
    for post in com["posts"]:
        post["a"] = person_id(post["a"])
        if post.get("b"):
            post["b"] = person_id(post["b"])
        if post.get("grid"):
            post["grid"] = post["grid"].replace("ZN-", "XH-")
    roster = com["duty_roster"]
    roster["weekly"] = {day: person_id(code) for day, code in roster["weekly"].items()}
    roster["dates"] = {day: person_id(code) for day, code in (roster.get("dates") or {}).items()}
    for resident in com.get("demo_residents", []):
        resident["building"] = resident["building"].replace("ZN-", "XH-")
    return com


def district(*, second_people: list[dict[str, Any]] | None = None, with_first: bool = True) -> dict[str, Any]:
    """The district file as data; `second_people` are added to the second community's people."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    second = _second_community(data["communities"][0])
    second["people"] += second_people or []
    data["communities"] = ([data["communities"][0]] if with_first else []) + [second]
    return data


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
