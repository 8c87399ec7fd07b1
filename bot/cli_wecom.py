"""`griddesk wecom sync [--apply]`: bind registry people to the WeCom app's members by mobile number.

    griddesk wecom sync            read the members the app can see (department/list, user/list),
                                   match them to registry people by mobile number and print the
                                   diff; nothing changes
    griddesk wecom sync --apply    also record the proposed member ids on the people (and give
                                   them their WeCom chat identity)

Needs WECOM_CORP_ID, WECOM_AGENT_ID and WECOM_SECRET (WECOM_API_BASE for another server); the
server's IP must be among the app's trusted IPs (errcode 60020 otherwise). WeCom hands mobile
numbers only to apps allowed to read them; members without one are listed as unmatched. A
registry file that names a `wecom_userid` wins over what `--apply` recorded, so copy the printed
lines into the registry to keep them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Member:
    userid: str
    name: str
    mobile: str


@dataclass(frozen=True)
class Person:
    code: str
    name: str
    phone: str
    wecom_userid: str | None


@dataclass
class SyncPlan:
    """What `sync` found: (person code, member id) to bind, the people already bound right,
    members no person matches, and people whose recorded id the app cannot see."""

    bind: list[tuple[Person, Member]]
    unchanged: list[Person]
    unmatched: list[Member]
    unseen: list[Person]

    def describe(self) -> str:
        lines = []
        for person, member in self.bind:
            was = f" (was {person.wecom_userid})" if person.wecom_userid else ""
            lines.append(f"+ {person.code} {person.name} → {member.userid}{was}")
        lines += [f"= {p.code} {p.name} = {p.wecom_userid}" for p in self.unchanged]
        lines += [f"? member {m.userid} {m.name}: no registry person with this mobile number" for m in self.unmatched]
        lines += [f"! {p.code} {p.name}: {p.wecom_userid} is not among the app's visible members" for p in self.unseen]
        lines.append(f"{len(self.bind)} to bind, {len(self.unchanged)} unchanged, {len(self.unmatched)} unmatched, "
                     f"{len(self.unseen)} not visible")
        return "\n".join(lines)


def mobile_key(number: str) -> str:
    """A mobile number as digits, without a +86 / 0086 prefix."""
    digits = re.sub(r"\D", "", number)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            return digits[len(prefix):]
    return digits


def plan(members: Iterable[Member], people: Iterable[Person]) -> SyncPlan:
    """Match members to people by mobile number; a number two people share binds neither."""
    by_mobile: dict[str, list[Person]] = {}
    people = list(people)
    for person in people:
        if person.phone:
            by_mobile.setdefault(mobile_key(person.phone), []).append(person)
    result = SyncPlan([], [], [], [])
    seen_ids = set()
    for member in members:
        userid = member.userid.lower()
        seen_ids.add(userid)
        matches = by_mobile.get(mobile_key(member.mobile), []) if member.mobile else []
        if len(matches) != 1:
            result.unmatched.append(member)
            continue
        person = matches[0]
        if (person.wecom_userid or "").lower() == userid:
            result.unchanged.append(person)
        else:
            result.bind.append((person, Member(userid, member.name, member.mobile)))
    bound = {p.code for p, _ in result.bind}
    result.unseen = [p for p in people if p.wecom_userid and p.wecom_userid.lower() not in seen_ids
                     and p.code not in bound]
    return result


def visible_members(client: Any) -> list[Member]:
    """The app's visible members: every department's own members (fetch_child=0, so no member
    is read twice)."""
    departments = client.get_json("department/list").get("department", [])
    members: dict[str, Member] = {}
    for department in departments:
        answer = client.get_json("user/list", department_id=department["id"], fetch_child=0)
        for user in answer.get("userlist", []):
            members.setdefault(str(user["userid"]).lower(), Member(
                str(user["userid"]).lower(), str(user.get("name", "")), str(user.get("mobile", ""))))
    return list(members.values())


def sync(settings: Any, *, apply: bool, out: Any = None) -> int:
    from sqlalchemy import select
    from sqlmodel import col
    from wechatpy.exceptions import WeChatClientException

    from bot.app import open_database
    from bot.channels import wecom
    from storage import tables as t
    from storage.clock import SystemClock
    from storage.unit_of_work import UnitOfWork

    out = out or sys.stdout  # the stream of the moment, not the one of when this module was imported
    client = wecom.build_client(settings)
    if client is None:
        print("WeCom is not configured: set WECOM_CORP_ID, WECOM_AGENT_ID and WECOM_SECRET", file=sys.stderr)
        return 2
    try:
        members = visible_members(client)
    except WeChatClientException as exc:
        print(f"WeCom refused: {exc.errcode} {exc.errmsg}", file=sys.stderr)
        return 1
    engine = open_database(settings)
    try:
        with UnitOfWork(engine) as uow:
            rows = list(uow.session.scalars(select(t.Person).where(col(t.Person.active).is_(True))
                                            .order_by(col(t.Person.code))))
            found = plan(members, [Person(p.code, p.name, p.phone, p.wecom_userid) for p in rows])
            print(found.describe(), file=out)
            if not apply:
                if found.bind:
                    print("nothing changed; run with --apply to record these member ids", file=out)
                return 0
            by_code = {p.code: p for p in rows}
            for person, member in found.bind:
                by_code[person.code].wecom_userid = member.userid
            uow.commit()
        wecom.bind_members(engine, SystemClock().now())
        if found.bind:
            print("recorded; to keep them across registry loads, add to the registry:", file=out)
            for person, member in found.bind:
                print(f"  {person.code}: wecom_userid: {member.userid}", file=out)
    finally:
        engine.dispose()
    return 0


def _sync(args: argparse.Namespace) -> int:
    from bot.settings import Settings

    return sync(Settings(), apply=args.apply)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("wecom", help="the WeCom (企业微信) app for staff")
    sub = parser.add_subparsers(dest="wecom_command", required=True)
    sync_parser = sub.add_parser("sync", help="propose bindings of registry people to WeCom members by mobile")
    sync_parser.add_argument("--apply", action="store_true", help="record the proposed bindings")
    sync_parser.set_defaults(func=_sync)


__all__: Sequence[str] = ("plan", "register", "sync", "visible_members")
