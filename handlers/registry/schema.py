"""The community registry file: what it may contain, validated.

A registry YAML describes one or more communities (一社多居): each community has residents'
committees (居委会) → grids (网格) → buildings (楼栋); the people who work there; their posts with
A and B holders (AB岗); the duty roster (社区服务365); and the categories residents' matters fall
into, each with its owning post and time limits. `config/example-community.yaml` is a full example.

Cross-references (a post's holders, a category's post, a grid's post) are checked in
`RegistryFile.check_references`, so every error names the file, line and field.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"

PostKind = Literal[
    "grid",  # everything in one grid: the grid worker's post (网格员)
    "specialist",  # one business line (窗口/专干)
    "mediation",  # complaints and disputes (群众工作中心)
    "front_desk",  # triage of what could not be routed (前台)
    "secretary",  # the residents' council secretary (议事会秘书)
    "director",  # the service-centre director (服务中心主任)
    "service",  # the service centre executing council decisions (社区服务中心)
]
Role = Literal[
    "grid_worker",
    "specialist",
    "mediator",
    "duty_leader",
    "front_desk",
    "secretary",
    "director",
]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Leave(_Strict):
    """An absence (请假/休假): the B holder covers the person's A posts in these days."""

    start: dt.date = Field(alias="from")
    end: dt.date = Field(alias="to")
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Leave:
        if self.end < self.start:
            raise ValueError("'to' is before 'from'")
        return self


class Person(_Strict):
    """A staff member (工作人员)."""

    id: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=40)
    roles: list[Role] = Field(min_length=1)
    phone: str = ""
    language: Literal["zh-Hans", "zh-Hant", "en"] = "zh-Hans"
    telegram_id: int | None = None
    wechat_openid: str | None = None
    # WeCom (企业微信) member id; WeCom returns it lowercased, so it is compared lowercased.
    wecom_userid: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    # Where staff notices go first; without it: wecom, telegram, wechat, then the web inbox.
    notify_order: list[Literal["wecom", "telegram", "wechat", "web"]] = []
    leave: list[Leave] = []


class Post(_Strict):
    """A post (岗位) with its A holder and B holder (AB岗: B covers when A is absent)."""

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1)
    kind: PostKind
    grid: str | None = None
    a: str
    b: str | None = None

    @model_validator(mode="after")
    def _grid_post_has_grid(self) -> Post:
        if self.kind == "grid" and not self.grid:
            raise ValueError("a post of kind 'grid' names its grid")
        return self


class Building(_Strict):
    """A building (楼栋); its code is what the QR code on the grid sign carries."""

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1)
    latitude: float | None = None
    longitude: float | None = None


class Grid(_Strict):
    """A grid (网格) of 200–300 households, served by one grid post."""

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1)
    households: int = Field(ge=0)
    buildings: list[Building] = Field(min_length=1)


class Committee(_Strict):
    """A residents' committee (居委会)."""

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1)
    grids: list[Grid] = Field(min_length=1)


class TimeLimits(_Strict):
    """Published time limits (服务时限): working hours to acknowledge, working days to reply and resolve."""

    acknowledge_hours: float = Field(gt=0)
    reply_days: int = Field(ge=1)
    resolve_days: int = Field(ge=1)


class UrgentLimits(_Strict):
    """Limits of urgent matters (急难特事), on the clock, 24/7."""

    acknowledge_minutes: int = Field(default=15, gt=0)
    reply_minutes: int = Field(default=60, gt=0)
    resolve_hours: int = Field(default=24, gt=0)


class Category(_Strict):
    """A category of matters; `post` is a post code, or "grid" for the resident's grid post."""

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1)
    post: str
    limits: TimeLimits


class DutyRoster(_Strict):
    """Who is the duty leader (带班领导) on each weekday, with dated exceptions (holidays)."""

    weekly: dict[Weekday, str]
    dates: dict[dt.date, str] = {}

    @field_validator("weekly")
    @classmethod
    def _every_day(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [d for d in WEEKDAYS if d not in value]
        if missing:
            raise ValueError(f"no duty leader for {', '.join(missing)}")
        return value


class WorkingHours(_Strict):
    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(17, 30)

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if self.end <= self.start:
            raise ValueError("'end' is not after 'start'")
        return self


class Council(_Strict):
    """The residents' council (居民议事会) of the community."""

    name: str
    secretary_post: str
    co_sign_threshold: int = Field(default=10, ge=1)


class DemoResident(_Strict):
    """A resident offered by the web chat's persona picker (demo only)."""

    name: str
    building: str
    unit: str = ""
    room: str = ""
    phone: str = ""
    language: Literal["zh-Hans", "zh-Hant", "en"] = "zh-Hans"


class Community(_Strict):
    """A community (社区): one party committee, one residents' council, one service centre."""

    code: str = Field(pattern=r"^[A-Z]{2,4}$")
    name: str = Field(min_length=1)
    district: str = Field(min_length=1)
    city: str = ""
    timezone: str = "Asia/Shanghai"
    working_hours: WorkingHours = WorkingHours()
    urgent_limits: UrgentLimits = UrgentLimits()
    committees: list[Committee] = Field(min_length=1)
    people: list[Person] = Field(min_length=1)
    posts: list[Post] = Field(min_length=1)
    duty_roster: DutyRoster
    categories: list[Category] = Field(min_length=1)
    council: Council | None = None
    demo_residents: list[DemoResident] = []


class RegistryFile(_Strict):
    """The whole file: `version: 1` and a list of communities."""

    version: Literal[1]
    communities: list[Community] = Field(min_length=1)


Loc = tuple[str | int, ...]


class Broken(NamedTuple):
    """A broken cross-reference or a duplicate code: where, what, and (for a duplicate) where the
    code was first used, so the error names both places."""

    loc: Loc
    message: str
    also: Loc | None = None


class _FirstUse:
    """Codes that must be unique across the whole file (people, committees, grids, buildings):
    the database keeps one row per code, so a second use would take the first one over."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.first: dict[str, tuple[str, Loc]] = {}

    def check(self, code: str, community: str, loc: Loc) -> Broken | None:
        seen = self.first.get(code)
        if seen is None:
            self.first[code] = (community, loc)
            return None
        if seen[0] == community:
            return Broken(loc, f"duplicate {self.what} {code!r}", seen[1])
        return Broken(loc, f"{self.what} {code!r} is used by two communities ({seen[0]} and "
                           f"{community}); it belongs to one community", seen[1])


def reference_errors(registry: RegistryFile) -> list[Broken]:
    """Broken cross-references and duplicate codes.

    Post and category codes are per community (every community has its `front_desk`); person ids,
    chat accounts and committee, grid and building codes are unique across the file.
    """
    errors: list[Broken] = []
    community_codes: set[str] = set()
    file_people = _FirstUse("person id")
    file_committees = _FirstUse("committee code")
    file_grids = _FirstUse("grid code")
    file_buildings = _FirstUse("building code")
    # A chat account is one person's: a second one naming it would take their notices over.
    file_accounts = {"telegram_id": _FirstUse("telegram_id"), "wechat_openid": _FirstUse("wechat_openid"),
                     "wecom_userid": _FirstUse("wecom_userid")}
    for ci, com in enumerate(registry.communities):
        here: Loc = ("communities", ci)
        if com.code in community_codes:
            errors.append(Broken(here + ("code",), f"duplicate community code {com.code!r}"))
        community_codes.add(com.code)
        people = {}
        for pi, person in enumerate(com.people):
            errors += _found(file_people.check(person.id, com.code, here + ("people", pi, "id")))
            for name, accounts in file_accounts.items():
                account = getattr(person, name)
                if account is not None:
                    account = str(account).lower() if name == "wecom_userid" else account
                    errors += _found(accounts.check(str(account), com.code, here + ("people", pi, name)))
            people[person.id] = person
        com_grids: set[str] = set()
        for ki, committee in enumerate(com.committees):
            kloc = here + ("committees", ki)
            errors += _found(file_committees.check(committee.code, com.code, kloc + ("code",)))
            for gi, grid in enumerate(committee.grids):
                gloc = kloc + ("grids", gi)
                errors += _found(file_grids.check(grid.code, com.code, gloc + ("code",)))
                com_grids.add(grid.code)
                for bi, building in enumerate(grid.buildings):
                    errors += _found(file_buildings.check(
                        building.code, com.code, gloc + ("buildings", bi, "code")))
        posts: dict[str, tuple[Post, Loc]] = {}
        for pi, post in enumerate(com.posts):
            ploc = here + ("posts", pi)
            if post.code in posts:
                errors.append(Broken(ploc + ("code",), f"duplicate post code {post.code!r}",
                                     posts[post.code][1] + ("code",)))
            else:
                posts[post.code] = (post, ploc)
            if post.a not in people:
                errors.append(Broken(ploc + ("a",), f"post {post.code!r} has no holder: unknown person {post.a!r}"))
            if post.b is not None and post.b not in people:
                errors.append(Broken(ploc + ("b",), f"unknown person {post.b!r}"))
            if post.grid is not None and post.grid not in com_grids:
                errors.append(Broken(ploc + ("grid",), f"unknown grid {post.grid!r}"))
        grid_posts = {p.grid for p in com.posts if p.kind == "grid"}
        for grid_code in sorted(com_grids - grid_posts):
            errors.append(Broken(here + ("posts",), f"grid {grid_code!r} has no post of kind 'grid'"))
        for kind in ("front_desk", "mediation", "director"):
            if not any(p.kind == kind for p in com.posts):
                errors.append(Broken(here + ("posts",), f"no post of kind {kind!r}"))
        for day, pid in list(com.duty_roster.weekly.items()) + [
            (str(d), p) for d, p in com.duty_roster.dates.items()
        ]:
            if pid not in people:
                errors.append(Broken(here + ("duty_roster", day), f"unknown person {pid!r}"))
        category_codes: set[str] = set()
        for ki, cat in enumerate(com.categories):
            cloc = here + ("categories", ki)
            if cat.code in category_codes:
                errors.append(Broken(cloc + ("code",), f"duplicate category code {cat.code!r}"))
            category_codes.add(cat.code)
            if cat.post != "grid" and cat.post not in posts:
                errors.append(Broken(cloc + ("post",), f"unknown post {cat.post!r}"))
        if com.council is not None and com.council.secretary_post not in posts:
            errors.append(Broken(here + ("council", "secretary_post"),
                                 f"unknown post {com.council.secretary_post!r}"))
        all_buildings = {
            b.code for k in com.committees for g in k.grids for b in g.buildings
        }
        for ri, resident in enumerate(com.demo_residents):
            if resident.building not in all_buildings:
                errors.append(Broken(here + ("demo_residents", ri, "building"),
                                     f"unknown building {resident.building!r}"))
    return errors


def _found(broken: Broken | None) -> list[Broken]:
    return [broken] if broken is not None else []
