"""The database tables.

All datetimes are timezone-aware UTC (SQLModel's UTCDateTime: SQLite stores UTC without an
offset and it comes back aware), so comparisons are exact on both databases.

Nothing here knows a channel: a channel is a plain string ("web", "telegram", "wechat") in a row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, insert, inspect
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session, attributes, make_transient_to_detached
from sqlmodel import Field, SQLModel, col

M = TypeVar("M")

# Row ids are INTEGER columns, 32-bit on PostgreSQL: a larger number names no row, and the
# database would refuse to compare it with an id ("integer out of range") instead of finding none.
ROW_ID_MAX = 2**31 - 1


def row_id(ref: str | int) -> int | None:
    """The row id that `ref` (an int, or decimal digits) can name; None when it can name none:
    negative, past ROW_ID_MAX, or digits that are not decimal (²)."""
    text = str(ref)
    if not (text.isdecimal() and len(text) <= len(str(ROW_ID_MAX))):
        return None
    value = int(text)
    return value if value <= ROW_ID_MAX else None


def by_id(session: Session, table: type[M], ref: str | int) -> M | None:
    """The row of `table` that `ref` names as an id; None when there is none, or when `ref`
    can name none (row_id): such a number never reaches the database."""
    ident = row_id(ref)
    return session.get(table, ident) if ident is not None else None


_MAPPERS: dict[Any, Any] = {}


def loaded(session: Session, table: type[M], values: Mapping[Any, Any]) -> M:
    """The session's row of `table` with the column `values` of a row read without the ORM: the
    session's own object when it has one, else one made from them as a query would have loaded
    it (no validation, nothing for the unit of work to write until it is changed; a column not
    in `values` is read when first used)."""
    mapper = _MAPPERS.get(table) or _MAPPERS.setdefault(table, inspect(table))
    existing = session.identity_map.get(mapper.identity_key_from_primary_key((values["id"],)))
    if existing is not None:
        found: M = existing
        return found
    row = mapper.class_manager.new_instance()
    attributes.instance_dict(row).update(values)  # as the ORM's loader fills a row: no history
    make_transient_to_detached(row)
    session.add(row)
    return row


def columns_of(*tables: Any) -> list[Any]:
    """Every column of each table, in order: a Core select whose rows `split` takes apart."""
    return [column for table in tables for column in table.__table__.c]


def split(session: Session, row: Sequence[Any], *tables: type[Any]) -> list[Any]:
    """The session's rows (`loaded`) of `tables` from one Core row of `columns_of(*tables)`
    (and anything after them); None for a table whose id is None (an outer join's missing side).
    A Core read and `loaded` cost a fraction of the ORM's loading of the same entities."""
    found, start = [], 0
    for table in tables:
        names = _column_names(table)
        values = dict(zip(names, row[start:start + len(names)], strict=True))
        start += len(names)
        found.append(loaded(session, table, values) if values["id"] is not None else None)
    return found


_NAMES: dict[Any, tuple[str, ...]] = {}


def _column_names(table: Any) -> tuple[str, ...]:
    names = _NAMES.get(table)
    if names is None:
        names = _NAMES[table] = tuple(c.name for c in table.__table__.c)
    return names


def inserted(session: Session, table: type[M], **values: Any) -> M:
    """Insert one row in one statement and return it as the session's object (`loaded`), with
    its id and its columns' defaults: cheaper than adding a model object and flushing the unit
    of work, for a row that must be in the database at once (others refer to it)."""
    stmt, defaults = _insert_of(table)
    new_id = session.connection().execute(stmt, values).scalar_one()  # Core: no ORM layer to pass
    return loaded(session, table, {**defaults, **values, "id": new_id})


_INSERTS: dict[Any, tuple[Any, dict[str, Any]]] = {}


def _insert_of(table: Any) -> tuple[Any, dict[str, Any]]:
    """`INSERT … RETURNING id` of `table`, built once, and the values the columns get when the
    insert does not name them (None without a default; a database default or a function is
    not known here, and such a column is read when first used)."""
    found = _INSERTS.get(table)
    if found is None:
        columns = table.__table__.c
        defaults = {c.name: (c.default.arg if c.default is not None else None) for c in columns
                    if c.name != "id" and c.server_default is None
                    and (c.default is None or c.default.is_scalar)}
        found = _INSERTS[table] = (insert(table.__table__).returning(columns.id), defaults)
    return found


# --------------------------------------------------------------------------- registry


class Community(SQLModel, table=True):
    """A community (社区); `code` prefixes its case numbers (ZN-20261121-0007)."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=8)
    name: str
    district: str
    city: str = ""
    timezone: str = "Asia/Shanghai"
    work_start: dt.time = dt.time(9, 0)
    work_end: dt.time = dt.time(17, 30)
    urgent_ack_minutes: int = 15
    urgent_reply_minutes: int = 60
    urgent_resolve_hours: int = 24
    council_name: str = ""
    council_secretary_post: str = ""
    co_sign_threshold: int = 10
    registry_hash: str = ""


class Committee(SQLModel, table=True):
    """A residents' committee (居委会)."""

    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id", index=True)
    code: str = Field(unique=True, max_length=32)
    name: str
    active: bool = True


class Grid(SQLModel, table=True):
    """A grid (网格)."""

    id: int | None = Field(default=None, primary_key=True)
    committee_id: int = Field(foreign_key="committee.id", index=True)
    code: str = Field(unique=True, max_length=32)
    name: str
    households: int = 0
    active: bool = True


class Building(SQLModel, table=True):
    """A building (楼栋)."""

    id: int | None = Field(default=None, primary_key=True)
    grid_id: int = Field(foreign_key="grid.id", index=True)
    code: str = Field(unique=True, max_length=32)
    name: str
    latitude: float | None = None
    longitude: float | None = None
    active: bool = True


class Person(SQLModel, table=True):
    """A staff member; `roles` is a comma-separated list of registry roles."""

    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id", index=True)
    code: str = Field(unique=True, max_length=32)
    name: str
    roles: str = ""
    phone: str = ""
    language: str = "zh-Hans"
    active: bool = True
    # The WeCom (企业微信) member id, lowercased as WeCom returns it (console sign-in, sync).
    wecom_userid: str | None = Field(default=None, max_length=64, index=True)
    # Where staff notices go first, comma-separated channels ("telegram,wecom"); "" = the default order.
    notify_order: str = Field(default="", max_length=64)

    def has_role(self, role: str) -> bool:
        return role in self.roles.split(",")


class Leave(SQLModel, table=True):
    """An absence of a person, inclusive dates in the community's time zone."""

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    start: dt.date
    end: dt.date
    reason: str = ""


class Post(SQLModel, table=True):
    """A post (岗位) with its A holder and B holder (AB岗). Codes are per community: every
    community of a district may have its own `front_desk` or `mediation`."""

    __table_args__ = (UniqueConstraint("community_id", "code"),)
    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id", index=True)
    code: str = Field(max_length=32)
    name: str
    kind: str
    grid_id: int | None = Field(default=None, foreign_key="grid.id")
    a_holder_id: int = Field(foreign_key="person.id")
    b_holder_id: int | None = Field(default=None, foreign_key="person.id")
    active: bool = True


class DutyDay(SQLModel, table=True):
    """The duty leader (带班领导) of a weekday ("mon".."sun") or of a date ("2026-10-01")."""

    __table_args__ = (UniqueConstraint("community_id", "day"),)
    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id", index=True)
    day: str = Field(max_length=10)
    person_id: int = Field(foreign_key="person.id")


class Category(SQLModel, table=True):
    """A category of matters with its owning post ("grid" = the resident's grid post)."""

    __table_args__ = (UniqueConstraint("community_id", "code"),)
    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id", index=True)
    code: str = Field(max_length=32)
    name: str
    post_code: str
    acknowledge_hours: float
    reply_days: int
    resolve_days: int


class RegistryVersion(SQLModel, table=True):
    """The registry's version, one row: bumped by every transaction that writes a registry table
    above, so each process sees with one cheap read whether its cached copy is stale
    (storage/registry_cache.py). `last` is the last version given (storage.sequences)."""

    __tablename__ = "registry_version"
    id: int = Field(default=1, primary_key=True)
    last: int = 0


# --------------------------------------------------------------------------- people we talk to


class Resident(SQLModel, table=True):
    """A resident (居民), bound to a building. Phone and address are shown only to case handlers."""

    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id", index=True)
    building_id: int | None = Field(default=None, foreign_key="building.id")
    name: str = ""
    unit: str = ""
    room: str = ""
    phone: str = ""
    language: str = "zh-Hans"
    demo: bool = False
    created_at: dt.datetime


class Identity(SQLModel, table=True):
    """A channel account (Telegram user id, WeChat openid, web chat id) of a resident or a person."""

    __table_args__ = (UniqueConstraint("channel", "address"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=128)
    resident_id: int | None = Field(default=None, foreign_key="resident.id", index=True)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    language: str | None = None
    reachable: bool = True
    unreachable_reason: str = ""
    last_inbound_at: dt.datetime | None = None
    created_at: dt.datetime


# --------------------------------------------------------------------------- cases


class CaseKind(StrEnum):
    SERVICE_REQUEST = "service_request"
    COMPLAINT = "complaint"


class CaseState(StrEnum):
    """Where a case stands.

    new → assigned → acknowledged → (transferred)* → replied → resolved → closed, or reopened.

    - new: stored, not yet routed (only inside the intake transaction).
    - assigned: dispatched to a post's holder, waiting for acknowledgement.
    - acknowledged: a staff member took it up; the first to do so is the first responder (首问).
    - transferred: handed to another post; waits for that post's holder to acknowledge.
    - returned: given back (退单) to the front desk for re-routing; the clock keeps running.
    - replied: the resident has had an answer.
    - resolved: the matter is done; waits for the resident's rating.
    - closed: rated (满意/基本满意), or closed after the follow-up without a rating.
    - reopened: the resident was not satisfied; back with the first responder.
    """

    NEW = "new"
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    TRANSFERRED = "transferred"
    RETURNED = "returned"
    REPLIED = "replied"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


OPEN_STATES = (
    CaseState.NEW,
    CaseState.ASSIGNED,
    CaseState.ACKNOWLEDGED,
    CaseState.TRANSFERRED,
    CaseState.RETURNED,
    CaseState.REPLIED,
    CaseState.REOPENED,
)


class Case(SQLModel, table=True):
    """A resident's service request or complaint (工单)."""

    __table_args__ = (
        Index("ix_case_holder_state", "holder_id", "state"),
        Index("ix_case_resident", "resident_id", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=32)
    community_id: int = Field(foreign_key="community.id", index=True)
    kind: str
    category: str
    urgent: bool = False
    text: str
    lang: str = "zh-Hans"
    channel: str = "web"
    resident_id: int = Field(foreign_key="resident.id")
    grid_id: int | None = Field(default=None, foreign_key="grid.id")
    building_id: int | None = Field(default=None, foreign_key="building.id")
    state: str = Field(default=CaseState.NEW, index=True)
    post_id: int | None = Field(default=None, foreign_key="post.id")
    holder_id: int | None = Field(default=None, foreign_key="person.id")
    first_responder_id: int | None = Field(default=None, foreign_key="person.id")
    proposal_id: int | None = Field(default=None, index=True)
    created_at: dt.datetime
    dispatched_at: dt.datetime
    ack_due: dt.datetime
    reply_due: dt.datetime
    resolve_due: dt.datetime
    acknowledged_at: dt.datetime | None = None
    replied_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    rating: str | None = None
    rating_comment: str = ""
    reopen_count: int = 0
    escalation_level: int = 0


# The deadline a case is working towards, as the case list orders by it ("most pressing
# first": handlers/cases/lifecycle.py next_due_column(), the very same expression, or the index serves
# nothing). Indexed per community, the director's first page of 100,000 cases is an index walk
# of 25 entries rather than a sort of them all. PostgreSQL only: SQLite does not match an
# expression written with bound parameters to an index, and would only pay for keeping it.
# Migration 0010.
NEXT_DUE = sql_case((col(Case.state).in_(("assigned", "transferred", "returned", "reopened")), col(Case.ack_due)),
                    (col(Case.state) == "acknowledged", col(Case.reply_due)), else_=col(Case.resolve_due))
Index("ix_case_next_due", col(Case.community_id), NEXT_DUE, col(Case.id)).ddl_if(dialect="postgresql")


class CaseEvent(SQLModel, table=True):
    """One step of a case, append-only: who, when, what, note."""

    # The action index finds the few corrected cases among all events (handlers/cases/corrections.py,
    # read with every figures report).
    __table_args__ = (UniqueConstraint("case_id", "seq"), Index("ix_caseevent_action", "action", "case_id"))
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    seq: int
    at: dt.datetime
    action: str
    actor_person_id: int | None = Field(default=None, foreign_key="person.id")
    actor_resident_id: int | None = Field(default=None, foreign_key="resident.id")
    note: str = ""
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Attachment(SQLModel, table=True):
    """A photo, a voice message or a location sent with a case.

    `ref` of a photo or voice message is "media:<Media.id>" when its bytes are kept (see
    storage.media), else the platform's own reference; of a location, its label.
    """

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    kind: str  # photo | voice | location
    # Indexed: a request for a kept photo finds the cases that carry it by its ref.
    ref: str = Field(default="", index=True)
    latitude: float | None = None
    longitude: float | None = None
    created_at: dt.datetime


class Media(SQLModel, table=True):
    """The bytes of a photo or voice message a resident sent, kept because the platform's copy
    expires after a few days. Rows are shared: the same bytes are stored once (`sha256`)."""

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(index=True, max_length=64)
    content_type: str = Field(max_length=127)
    size: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: dt.datetime  # when these bytes were last stored (storage.retention reads it)


class CaseCounter(SQLModel, table=True):
    """The last sequence number given to a community's cases on one day."""

    __table_args__ = (UniqueConstraint("community_id", "day"),)
    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id")
    day: str = Field(max_length=8)
    last: int = 0


# --------------------------------------------------------------------------- messaging


class OutboxState(StrEnum):
    """A notice's delivery state.

    - pending: waiting for the sender (also after a retryable failure, with next_attempt_at).
    - sent: the channel accepted it.
    - unreachable: the recipient cannot be reached on that channel (blocked the bot, never
      started it, no window left); shown to the front desk, not retried.
    - dead: failed `max_attempts` times; the reason is kept for the director.
    """

    PENDING = "pending"
    SENT = "sent"
    UNREACHABLE = "unreachable"
    DEAD = "dead"


class Outbox(SQLModel, table=True):
    """A message to send, written in the same transaction as the change that causes it."""

    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=128, index=True)
    identity_id: int | None = Field(default=None, foreign_key="identity.id")
    resident_id: int | None = Field(default=None, foreign_key="resident.id")
    person_id: int | None = Field(default=None, foreign_key="person.id")
    case_id: int | None = Field(default=None, foreign_key="case.id")
    topic: str = ""
    text: str
    buttons: list[list[dict[str, str]]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # Ids of kept photos (storage.media) that a channel able to show pictures sends before the
    # text. The database default fills the rows queued before the column existed.
    media: list[int] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    state: str = Field(default=OutboxState.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: dt.datetime
    created_at: dt.datetime
    sent_at: dt.datetime | None = None
    last_error: str = ""
    dedupe_key: str | None = Field(default=None, unique=True, max_length=128)


class Inbound(SQLModel, table=True):
    """A received update or message, kept so that a redelivery does nothing twice."""

    __table_args__ = (UniqueConstraint("channel", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    key: str = Field(max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default="received", max_length=16)  # received | done | failed
    error: str = ""
    received_at: dt.datetime
    done_at: dt.datetime | None = None


class UsedNonce(SQLModel, table=True):
    """A one-time value a channel has seen (a push's timestamp and nonce), kept while a replay of
    it could still pass the freshness check: the replay memory shared by processes without Redis.

    `owner` says what the value came with (the message it carried), so a platform's own resend
    of the same message can be told from a replay carrying another one.
    """

    __table_args__ = (UniqueConstraint("channel", "value"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    value: str = Field(max_length=128)
    owner: str = Field(default="", max_length=128)
    expires_at: dt.datetime = Field(index=True)


class ChatLine(SQLModel, table=True):
    """A line of a conversation on a channel that keeps no history of its own (the web chat):
    what the person sent ("in") or a direct reply to it ("out").

    Notices are not copied here; they stay in the outbox and are merged in when the history is
    read. The lines of one turn are written in the transaction that handles it, so a turn that
    did not commit leaves no line.
    """

    __table_args__ = (
        Index("ix_chatline_address", "channel", "address", "created_at", "id"),
        Index("ux_chatline_client_id", "channel", "address", "client_id", unique=True),
    )
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=128)
    direction: str = Field(max_length=3)  # in | out
    text: str
    action: str = Field(default="", max_length=64)
    # The page's own id for an "in" line: a retried send with the same id is answered from the
    # lines already stored and files nothing new.
    client_id: str | None = Field(default=None, max_length=64)
    buttons: list[list[dict[str, str]]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    created_at: dt.datetime



# ----- council (三会一评)


class MeetingKind(StrEnum):
    """The four meetings of 三会一评, in the order a proposal meets them.

    - collection: 意见收集会, residents' proposals are collected and sorted.
    - discussion: 议题讨论会, the selected topics are discussed.
    - decision: 议事决策会, the council decides (社区党委决策).
    - evaluation: 述职评议, residents evaluate how decisions were executed.
    """

    COLLECTION = "collection"
    DISCUSSION = "discussion"
    DECISION = "decision"
    EVALUATION = "evaluation"


class Meeting(SQLModel, table=True):
    """A scheduled meeting of a community's residents' council (居民议事会)."""

    __table_args__ = (Index("ix_meeting_community_kind", "community_id", "kind", "starts_at"),)
    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id")
    kind: str = Field(max_length=16)
    starts_at: dt.datetime
    place: str = ""
    created_by_id: int | None = Field(default=None, foreign_key="person.id")
    created_at: dt.datetime


class ProposalStage(StrEnum):
    """Where a proposal (居民提议) stands in 三会一评.

    collected → on_agenda → discussion → decision → adopted | not_adopted; from any open stage
    also rejected or merged; adopted → in_execution → done → evaluated.

    - collected: filed while no collection meeting is scheduled; waits for the next one.
    - on_agenda: on the agenda of a collection meeting (意见收集会); residents co-sign (附议).
    - discussion: selected for a discussion meeting (议题讨论会), by the secretary or because
      its co-signatures reached the council's threshold; the meeting may not be scheduled yet.
    - decision: discussed, put before a decision meeting (议事决策会).
    - adopted: the council decided to do it (decision text, executing post, deadline).
    - not_adopted: the council decided against it, with a reason.
    - rejected: out of the council's scope, with a reason (possibly turned into a case).
    - merged: a duplicate folded into another proposal; its signatures moved there.
    - in_execution: the service centre executes it through an execution case (社区服务中心执行).
    - done: the execution case was resolved; supporters are asked to evaluate it.
    - evaluated: residents have evaluated the execution (群众评议成效).
    """

    COLLECTED = "collected"
    ON_AGENDA = "on_agenda"
    DISCUSSION = "discussion"
    DECISION = "decision"
    ADOPTED = "adopted"
    NOT_ADOPTED = "not_adopted"
    REJECTED = "rejected"
    MERGED = "merged"
    IN_EXECUTION = "in_execution"
    DONE = "done"
    EVALUATED = "evaluated"


OPEN_PROPOSAL_STAGES = (
    ProposalStage.COLLECTED,
    ProposalStage.ON_AGENDA,
    ProposalStage.DISCUSSION,
    ProposalStage.DECISION,
)


class Proposal(SQLModel, table=True):
    """A resident's proposal to the council; `number` reads ZN-P-2026-0003."""

    __table_args__ = (Index("ix_proposal_community_stage", "community_id", "stage"),)
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=32)
    community_id: int = Field(foreign_key="community.id")
    title: str
    text: str
    category: str = "other"
    lang: str = "zh-Hans"
    channel: str = "web"
    proposer_id: int = Field(foreign_key="resident.id", index=True)
    stage: str = Field(default=ProposalStage.COLLECTED, max_length=16)
    collection_meeting_id: int | None = Field(default=None, foreign_key="meeting.id")
    discussion_meeting_id: int | None = Field(default=None, foreign_key="meeting.id")
    decision_meeting_id: int | None = Field(default=None, foreign_key="meeting.id")
    evaluation_meeting_id: int | None = Field(default=None, foreign_key="meeting.id")
    merged_into_id: int | None = Field(default=None, foreign_key="proposal.id")
    decision_text: str = ""
    reason: str = ""
    executing_post_id: int | None = Field(default=None, foreign_key="post.id")
    execution_due: dt.datetime | None = None
    case_id: int | None = Field(default=None, foreign_key="case.id")
    created_at: dt.datetime
    decided_at: dt.datetime | None = None
    done_at: dt.datetime | None = None


class ProposalEvent(SQLModel, table=True):
    """One step of a proposal, append-only: who, when, what, note."""

    __table_args__ = (UniqueConstraint("proposal_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    seq: int
    at: dt.datetime
    action: str
    actor_person_id: int | None = Field(default=None, foreign_key="person.id")
    actor_resident_id: int | None = Field(default=None, foreign_key="resident.id")
    note: str = ""
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CoSign(SQLModel, table=True):
    """A resident's co-signature (附议) of a proposal; one per resident, removed on withdrawal."""

    __table_args__ = (UniqueConstraint("proposal_id", "resident_id"),)
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    resident_id: int = Field(foreign_key="resident.id", index=True)
    created_at: dt.datetime


class Evaluation(SQLModel, table=True):
    """A resident's evaluation (评议) of an executed proposal: satisfied | basically_satisfied | unsatisfied."""

    __table_args__ = (UniqueConstraint("proposal_id", "resident_id"),)
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    resident_id: int = Field(foreign_key="resident.id")
    rating: str = Field(max_length=24)
    comment: str = ""
    created_at: dt.datetime


class ProposalCounter(SQLModel, table=True):
    """The last sequence number given to a community's proposals in one year."""

    __table_args__ = (UniqueConstraint("community_id", "year"),)
    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="community.id")
    year: int
    last: int = 0


# ----- deadline watch


class DueActionState(StrEnum):
    """Where one due action of the deadline watch stands.

    - pending: waiting for its time (due_at) and for a scheduler to claim it.
    - done: carried out, together with its case event and notices, in one transaction.
    - skipped: no longer needed when it fell due (the deadline was met or moved); kept so that
      the same action can never be recorded again.
    - failed: raised an error `attempts` times; left for a person to look at.
    """

    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class DueAction(SQLModel, table=True):
    """One thing the deadline watch must do at a time: remind, escalate, follow up, digest.

    `key` ("escalate_ack:42:20261123T030000", "digest:7:2026-11-23") is UNIQUE: an action can be
    recorded only once, whichever process plans or performs it.
    """

    __table_args__ = (Index("ix_due_action_due", "state", "due_at"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=160)
    kind: str = Field(max_length=32)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    person_id: int | None = Field(default=None, foreign_key="person.id")
    ref_at: dt.datetime | None = None
    due_at: dt.datetime
    state: str = Field(default=DueActionState.PENDING, max_length=16)
    attempts: int = 0
    created_at: dt.datetime
    done_at: dt.datetime | None = None
    outcome: str = Field(default="", max_length=500)


class WatchCursor(SQLModel, table=True):
    """How far the deadline watch has read the case history (CaseEvent ids)."""

    name: str = Field(primary_key=True, max_length=32)
    last_id: int = 0
    updated_at: dt.datetime | None = None


# ----- staff invites (Telegram deep links that tie a chat account to a registry person)


class StaffInvite(SQLModel, table=True):
    """A one-time invite for a staff member to bind a chat account (`/start s_<token>`).

    Only the token's SHA-256 is kept, so a database dump cannot be replayed as invites. An invite
    is used once (`used_at`), and refused after `expires_at`.
    """

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    person_id: int = Field(foreign_key="person.id", index=True)
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None = None
    used_channel: str = Field(default="", max_length=16)
    used_address: str = Field(default="", max_length=128)


# ----- the centre's console (web): staff passwords, sign-in sessions, the contact-view record


class StaffPassword(SQLModel, table=True):
    """A staff member's console password (argon2 hash) and the count of failed sign-ins that
    locks the person out for a while, counted here so every process sees the same count."""

    person_id: int = Field(primary_key=True, foreign_key="person.id")
    password_hash: str = Field(default="", max_length=255)
    set_at: dt.datetime | None = None
    failed_count: int = 0
    locked_until: dt.datetime | None = None


class PasswordLink(SQLModel, table=True):
    """A one-time link to set a console password (`griddesk staff password-link ID`); only the
    token's SHA-256 is kept."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    person_id: int = Field(foreign_key="person.id", index=True)
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None = None


class WebSession(SQLModel, table=True):
    """A signed-in web session (console and web chat alike); signing out ends it for good.
    Only the session token's SHA-256 is kept."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    address: str = Field(max_length=128)
    created_at: dt.datetime
    expires_at: dt.datetime
    ended_at: dt.datetime | None = None


class ContactView(SQLModel, table=True):
    """A staff member saw a resident's phone or address in the console (who, when, which case)."""

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    at: dt.datetime = Field(index=True)
