"""The residents' council (居民议事会): proposals through 三会一评, from collection to evaluation.

"社区居民提议，社区党委决策，社区服务中心执行，群众评议成效." A resident's proposal is collected for
the next opinion collection meeting (意见收集会); residents co-sign it (附议); the council's
secretary (议事会秘书) moves it to a discussion meeting (议题讨论会) and a decision meeting
(议事决策会); an adopted proposal becomes an execution case of the service centre (社区服务中心)
with the case desk's deadlines; when that case is resolved its supporters evaluate the
execution (述职评议). Stages are `storage.tables.ProposalStage`; every change is an append-only
ProposalEvent, and proposer and co-signers hear of every stage in their own language.

Only the holders of the council's secretary post (A or B) and the centre director may run the
council; residents see the proposals of their own community only. Each function works in the
caller's transaction, which commits the change together with its notices.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.cases import lifecycle
from handlers.errors import BadInput, InvalidState, NotAllowed, NotFound
from handlers.notify import Localised, MessageValue, moment, phrase, tell
from handlers.registry import directory
from handlers.replies import say, when
from handlers.routing import seat_holder
from storage import tables as t
from storage.sequences import append_event, next_in_counter
from storage.tables import OPEN_PROPOSAL_STAGES, CaseState, MeetingKind, ProposalStage

# Cosine similarity (TF-IDF over characters and character bigrams) above which two proposals
# read as the same matter; tuned on short Chinese proposals where one shared word is not enough.
SIMILAR_ABOVE = 0.35
MAX_SIMILAR = 3
TITLE_CHARS = 24
RATINGS = {"s": "satisfied", "b": "basically_satisfied", "u": "unsatisfied"}
# Which meeting column a stage's proposals are placed on.
MEETING_OF_KIND = {
    MeetingKind.COLLECTION: "collection_meeting_id",
    MeetingKind.DISCUSSION: "discussion_meeting_id",
    MeetingKind.DECISION: "decision_meeting_id",
    MeetingKind.EVALUATION: "evaluation_meeting_id",
}
DONE_STAGES = (ProposalStage.IN_EXECUTION, ProposalStage.DONE, ProposalStage.EVALUATED)


class NotSecretary(NotAllowed):
    """Only the council's secretary and the centre director run the council."""

    key = "council.error.not_secretary"


class NotYours(NotAllowed):
    """A resident acting on a proposal that is not theirs to change or evaluate."""

    key = "council.error.not_yours"


class WrongStage(InvalidState):
    key = "council.error.wrong_stage"


class MeetingNotHeld(InvalidState):
    """A decision recorded before the decision meeting that takes it (values: number, id, day)."""

    key = "council.error.meeting_not_held"


# --------------------------------------------------------------------------- helpers


def record(
    session: Session,
    proposal: t.Proposal,
    action: str,
    now: dt.datetime,
    *,
    person: t.Person | None = None,
    resident: t.Resident | None = None,
    note: str = "",
    **data: Any,
) -> None:
    """Append one event to the proposal's history."""
    append_event(session, t.ProposalEvent, "proposal_id", proposal.id, at=now, action=action,
                 person=person, resident=resident, note=note, data=data)


def history(session: Session, proposal: t.Proposal) -> list[t.ProposalEvent]:
    return list(
        session.scalars(
            select(t.ProposalEvent)
            .where(col(t.ProposalEvent.proposal_id) == proposal.id)
            .order_by(col(t.ProposalEvent.seq))
        )
    )


def next_number(session: Session, community: t.Community, now: dt.datetime) -> str:
    """The next proposal number of the community's local year: ZN-P-2026-0003."""
    year = directory.calendar_of(community).local_date(now).year
    seq = next_in_counter(session, t.ProposalCounter, at_once=True, community_id=community.id, year=year)
    return f"{community.code}-P-{year}-{seq:04d}"


_LEADS = re.compile(
    r"^(我们|我)?(想|希望)?(建议|提议|提个建议|提一个建议|提案)[：:，,\s]*|"
    r"^(i\s+)?(would\s+like\s+to\s+)?(propose|suggest)(\s+that)?[:,\s]*",
    re.IGNORECASE,
)


def derive_title(text: str) -> str:
    """A short title: the first clause of the text, without the 我建议 lead-in."""
    body = _LEADS.sub("", text.strip()).strip() or text.strip()
    first = re.split(r"[。！？!?；;，,\n]|\.\s", body, maxsplit=1)[0].strip() or body
    return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1] + "…"


def council_name(community: t.Community) -> str:
    return community.council_name or f"{community.name}居民议事会"


def _community(session: Session, community_id: int) -> t.Community:
    return directory.community(session, community_id)


def _tz(session: Session, proposal: t.Proposal) -> str:
    return _community(session, proposal.community_id).timezone


def is_secretary(session: Session, person: t.Person) -> bool:
    """The council's secretary (A or B holder of the secretary post) or the centre director."""
    if person.has_role("director"):
        return True
    community = _community(session, person.community_id)
    if not community.council_secretary_post:
        return False
    post = session.scalars(
        select(t.Post).where(
            col(t.Post.code) == community.council_secretary_post,
            col(t.Post.community_id) == community.id,
            col(t.Post.active).is_(True),
        )
    ).first()
    return post is not None and person.id in (post.a_holder_id, post.b_holder_id)


def check_secretary(session: Session, person: t.Person) -> None:
    if not is_secretary(session, person):
        raise NotSecretary()


def secretaries(session: Session, community: t.Community, now: dt.datetime) -> list[t.Person]:
    """Who hears of the council's business today: the post's holder (A, else B when A is away)."""
    if not community.council_secretary_post:
        return []
    table = directory.routing_table(session, community)
    seat = table.posts.get(community.council_secretary_post)
    if seat is None:
        return []
    held = seat_holder(seat, directory.calendar_of(community).local_date(now), table)
    codes = [held[0]] if held else [seat.a]
    return [directory.person_by_code(session, code) for code in codes]


def _tell_secretaries(session: Session, community: t.Community, now: dt.datetime, key: str,
                      proposal: t.Proposal, **values: Any) -> None:
    """Notice `key` about `proposal` (its number and title, and `values`) to each secretary."""
    for secretary in secretaries(session, community, now):
        tell(session, now, key, person=secretary, number=proposal.number, title=proposal.title, **values)


def find(session: Session, ref: str | int, community_id: int) -> t.Proposal:
    """A proposal of this community by id or number; other communities' proposals do not exist."""
    text = str(ref).strip()
    if not text:
        raise BadInput("no proposal", reason="usage")
    if text.isdigit():  # an id; past the ids' range, or ², it names none (t.row_id)
        proposal = t.by_id(session, t.Proposal, text)
    else:
        proposal = session.scalars(
            select(t.Proposal).where(col(t.Proposal.number) == text.upper())
        ).first()
    if proposal is None or proposal.community_id != community_id:
        raise NotFound(what=text)
    return proposal


def co_sign_count(session: Session, proposal: t.Proposal) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(t.CoSign)
            .where(col(t.CoSign.proposal_id) == proposal.id)
        )
        or 0
    )


def co_sign_counts(session: Session, proposals: Sequence[t.Proposal]) -> dict[int, int]:
    """The co-sign count of each proposal, by id, in one query."""
    ids = [p.id or 0 for p in proposals]
    if not ids:
        return {}
    counted = {pid: count for pid, count in session.execute(_CO_SIGN_COUNTS, {"ids": ids})}
    return {pid: counted.get(pid, 0) for pid in ids}


# Built once, as similar_open's statements are: every offer of similar proposals runs it.
_CO_SIGN_COUNTS = (
    select(col(t.CoSign.proposal_id), func.count())
    .where(col(t.CoSign.proposal_id).in_(bindparam("ids", expanding=True)))
    .group_by(col(t.CoSign.proposal_id))
)


def co_signers(session: Session, proposal: t.Proposal) -> list[t.Resident]:
    return list(
        session.scalars(
            select(t.Resident)
            .join(t.CoSign, col(t.CoSign.resident_id) == t.Resident.id)
            .where(col(t.CoSign.proposal_id) == proposal.id)
            .order_by(col(t.CoSign.id))
        )
    )


def supporters(session: Session, proposal: t.Proposal) -> list[t.Resident]:
    """The proposer, then the co-signers."""
    proposer = session.get(t.Resident, proposal.proposer_id)
    assert proposer is not None
    return [proposer] + [r for r in co_signers(session, proposal) if r.id != proposer.id]


def _tell_supporters(
    session: Session,
    proposal: t.Proposal,
    key: str,
    now: dt.datetime,
    buttons: Sequence[Sequence[tuple[str, str]]] = (),
    **values: MessageValue,
) -> None:
    """Tell the proposer and co-signers (values as for `tell`, `Localised` ones included)."""
    for resident in supporters(session, proposal):
        tell(
            session,
            now,
            key,
            resident=resident,
            prefer=proposal.channel,
            buttons=buttons,
            topic=key,
            number=proposal.number,
            title=proposal.title,
            **values,
        )


def meeting_label(lang: str, meeting: t.Meeting, timezone: str) -> str:
    return say(
        lang,
        "council.meeting_label",
        kind=say(lang, f"meeting.{meeting.kind}"),
        at=when(lang, meeting.starts_at, timezone),
        place=meeting.place,
    )


def _meeting_or_unscheduled(meeting: t.Meeting | None, timezone: str) -> Localised:
    """The meeting a proposal goes to, or "not scheduled yet", in the recipient's language."""
    if meeting is None:
        return phrase("council.meeting_unscheduled")
    return Localised(lambda lang: meeting_label(lang, meeting, timezone))


def next_meeting(
    session: Session, community_id: int, kind: str, now: dt.datetime
) -> t.Meeting | None:
    """The earliest meeting of this kind that has not started yet."""
    return session.scalars(
        select(t.Meeting)
        .where(
            col(t.Meeting.community_id) == community_id,
            col(t.Meeting.kind) == kind,
            col(t.Meeting.starts_at) > now,
        )
        .order_by(col(t.Meeting.starts_at), col(t.Meeting.id))
    ).first()


def meetings_of(session: Session, community_id: int) -> list[t.Meeting]:
    return list(
        session.scalars(
            select(t.Meeting)
            .where(col(t.Meeting.community_id) == community_id)
            .order_by(col(t.Meeting.starts_at), col(t.Meeting.id))
        )
    )


def meeting(session: Session, ref: str | int, community_id: int) -> t.Meeting:
    text = str(ref).strip()
    row = t.by_id(session, t.Meeting, text)
    if row is None or row.community_id != community_id:
        raise NotFound(what=text)
    return row


# --------------------------------------------------------------------------- similarity


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


# Words every proposal shares (the lead-in and the place itself); left in, they make any two
# proposals look alike.
_COMMON = re.compile(r"我们|我|建议|提议|希望|能否|可否|可以|一下|一个|一组|社区|小区")


def normalise(text: str) -> str:
    """Simplified, lower-case, without the common words, spaces and punctuation."""
    simplified = _COMMON.sub("", _t2s().convert(text).lower())
    return "".join(ch for ch in simplified if ch.isalnum())


@lru_cache(maxsize=1)
def _char_grams() -> Callable[[str], list[str]]:
    """scikit-learn's own analyser of characters and character bigrams, so that the features
    are TfidfVectorizer's to the letter."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(analyzer="char", ngram_range=(1, 2), lowercase=False).build_analyzer()


def _gram_key(gram: str) -> int:
    """A character or a bigram as one integer (code points take 21 bits); the integers sort as
    the strings do (a < ab < b)."""
    return ord(gram[0]) << 21 | (ord(gram[1]) + 1 if len(gram) > 1 else 0)


@lru_cache(maxsize=4096)
def _gram_counts(text: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The distinct grams of a text as compared (normalised, " " when nothing is left), sorted,
    and how often each occurs.

    Kept for the texts seen lately: the open proposals are compared again with every new one.
    The text is the key, so an edited proposal is a new text and nothing needs invalidating.
    """
    counted = Counter(map(_gram_key, _char_grams()(normalise(text) or " ")))
    keys = np.array(sorted(counted), dtype=np.int64)
    counts = np.array([counted[key] for key in keys.tolist()], dtype=np.int64)
    keys.flags.writeable = counts.flags.writeable = False  # shared by every later call
    return keys, counts


def similarities(texts: Sequence[str], against: Sequence[str]) -> list[list[float]]:
    """Cosine similarity of each text to each of `against`.

    TF-IDF over characters and character bigrams: single characters catch paraphrases
    (增设健身器材 / 健身器材增设), bigrams keep unrelated proposals apart. The figures are
    those of scikit-learn's TfidfVectorizer (smooth idf, l2 rows) and cosine_similarity over all
    the texts (a test holds them equal). The counts are kept per text instead of coming from
    CountVectorizer over all the texts, with the same scores to the last bit (a test holds that
    too): analysing every open proposal again for each new one cost ten times the arithmetic.
    """
    if not texts or not against:
        return [[0.0] * len(against) for _ in texts]
    from scipy.sparse import csr_array

    docs = [_gram_counts(x) for x in [*texts, *against]]
    lengths = np.array([len(keys) for keys, _ in docs])
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    # The vocabulary's columns in the strings' order, as CountVectorizer numbers them.
    _, columns, in_docs = np.unique(
        np.concatenate([keys for keys, _ in docs]), return_inverse=True, return_counts=True
    )
    idf = np.log((1 + len(docs)) / (1 + in_docs)) + 1
    weighted = np.concatenate([counts for _, counts in docs]) * idf[columns]
    norms = np.sqrt(np.add.reduceat(weighted * weighted, bounds[:-1]))  # none 0: " " at least
    rows = weighted * np.repeat(1 / norms, lengths)
    k, cut, width = len(texts), bounds[len(texts)], len(in_docs)
    queries = csr_array((rows[:cut], columns[:cut], bounds[: k + 1]), shape=(k, width))
    others = csr_array((rows[cut:], columns[cut:], bounds[k:] - cut), shape=(len(against), width))
    return [[float(v) for v in row] for row in (queries @ others.T).toarray()]


def similar_open(session: Session, community_id: int, text: str) -> list[t.Proposal]:
    """Open proposals of the council that read like `text`, most similar first."""
    # Ranked on id, title and text alone: whole proposals are loaded only for the few shown.
    candidates = session.execute(_OPEN_TEXTS, {"community_id": community_id}).all()
    if not candidates:
        return []
    scores = similarities([text], [f"{title} {body}" for _, title, body in candidates])[0]
    ranked = sorted(
        ((s, pid) for s, (pid, _, _) in zip(scores, candidates, strict=True) if s >= SIMILAR_ABOVE),
        key=lambda sp: (-sp[0], sp[1]),
    )
    ids = [pid for _, pid in ranked[:MAX_SIMILAR]]
    if not ids:
        return []
    loaded = {p.id: p for p in session.scalars(_PROPOSALS_BY_ID, {"ids": ids})}
    return [loaded[pid] for pid in ids if pid in loaded]


# Built once: every proposal a resident makes runs them, and building a statement costs more
# than running it.
_OPEN_TEXTS = (
    select(col(t.Proposal.id), col(t.Proposal.title), col(t.Proposal.text))
    .where(
        col(t.Proposal.community_id) == bindparam("community_id"),
        col(t.Proposal.stage).in_(OPEN_PROPOSAL_STAGES),
    )
    .order_by(col(t.Proposal.id))
)
_PROPOSALS_BY_ID = select(t.Proposal).where(
    col(t.Proposal.id).in_(bindparam("ids", expanding=True))
)


def duplicates(items: Sequence[t.Proposal]) -> dict[int, list[t.Proposal]]:
    """For each item, the other items of the same list that read like it (possible duplicates)."""
    texts = [f"{p.title} {p.text}" for p in items]
    scores = similarities(texts, texts)
    found: dict[int, list[t.Proposal]] = {}
    for i, item in enumerate(items):
        found[item.id or 0] = [
            other for j, other in enumerate(items) if j != i and scores[i][j] >= SIMILAR_ABOVE
        ]
    return found


# --------------------------------------------------------------------------- residents


@dataclass(frozen=True)
class Filed:
    proposal: t.Proposal
    meeting: t.Meeting | None


def propose(
    session: Session,
    resident: t.Resident,
    text: str,
    category: str,
    *,
    lang: str,
    channel: str,
    now: dt.datetime,
) -> Filed:
    """File a proposal for the next collection meeting of the resident's council (if scheduled)."""
    text = text.strip()
    if not text:
        raise BadInput("empty", reason="empty")
    community = _community(session, resident.community_id)
    upcoming = next_meeting(session, community.id or 0, MeetingKind.COLLECTION, now)
    proposal = t.Proposal(
        number=next_number(session, community, now),
        community_id=community.id or 0,
        title=derive_title(text),
        text=text,
        category=category or "other",
        lang=lang,
        channel=channel,
        proposer_id=resident.id or 0,
        stage=ProposalStage.ON_AGENDA if upcoming else ProposalStage.COLLECTED,
        collection_meeting_id=upcoming.id if upcoming else None,
        created_at=now,
    )
    session.add(proposal)
    session.flush()
    record(
        session,
        proposal,
        "collected",
        now,
        resident=resident,
        category=proposal.category,
        channel=channel,
    )
    if upcoming is not None:
        record(session, proposal, "on_agenda", now, meeting=upcoming.id)
    _tell_secretaries(session, community, now, "council.new_for_secretary", proposal,
                      text=proposal.text)
    return Filed(proposal, upcoming)


def _check_can_sign(proposal: t.Proposal) -> None:
    if proposal.stage not in OPEN_PROPOSAL_STAGES:
        raise WrongStage(number=proposal.number)


def co_sign(session: Session, proposal: t.Proposal, resident: t.Resident, now: dt.datetime) -> bool:
    """附议: add the resident's co-signature; False when they had signed already or proposed it."""
    if proposal.community_id != resident.community_id:
        raise NotFound(what=proposal.number)
    _check_can_sign(proposal)
    if proposal.proposer_id == resident.id or _signed(session, proposal, resident.id or 0):
        return False
    session.add(
        t.CoSign(proposal_id=proposal.id or 0, resident_id=resident.id or 0, created_at=now)
    )
    session.flush()
    record(session, proposal, "co_signed", now, resident=resident)
    check_threshold(session, proposal, now)
    return True


def _signed(session: Session, proposal: t.Proposal, resident_id: int) -> bool:
    return (
        session.scalars(
            select(t.CoSign).where(
                col(t.CoSign.proposal_id) == proposal.id, col(t.CoSign.resident_id) == resident_id
            )
        ).first()
        is not None
    )


def withdraw(
    session: Session, proposal: t.Proposal, resident: t.Resident, now: dt.datetime
) -> None:
    """Take back a co-signature while the proposal is still open."""
    if proposal.community_id != resident.community_id:
        raise NotFound(what=proposal.number)
    row = session.scalars(
        select(t.CoSign).where(
            col(t.CoSign.proposal_id) == proposal.id, col(t.CoSign.resident_id) == resident.id
        )
    ).first()
    if row is None:
        raise WrongStage(number=proposal.number)
    _check_can_sign(proposal)
    session.delete(row)
    session.flush()
    record(session, proposal, "co_sign_withdrawn", now, resident=resident)


def retitle(
    session: Session,
    proposal: t.Proposal,
    title: str,
    now: dt.datetime,
    *,
    person: t.Person | None = None,
    resident: t.Resident | None = None,
) -> None:
    """Edit the title: the proposer while it is open, or the secretary."""
    title = title.strip()
    if not title:
        raise BadInput("no title", reason="usage")
    if person is not None:
        check_secretary(session, person)
    elif (
        resident is None
        or resident.id != proposal.proposer_id
        or proposal.stage not in OPEN_PROPOSAL_STAGES
    ):
        raise NotYours(number=proposal.number)
    old = proposal.title
    proposal.title = title[:120]
    record(
        session,
        proposal,
        "retitled",
        now,
        person=person,
        resident=resident,
        note=proposal.title,
        old=old,
    )


def of_community(
    session: Session, community_id: int, *, open_only: bool = False
) -> list[t.Proposal]:
    stmt = select(t.Proposal).where(col(t.Proposal.community_id) == community_id)
    if open_only:
        stmt = stmt.where(col(t.Proposal.stage).in_(OPEN_PROPOSAL_STAGES))
    return list(session.scalars(stmt.order_by(col(t.Proposal.id).desc())))


def evaluate(
    session: Session,
    proposal: t.Proposal,
    resident: t.Resident,
    rating: str,
    comment: str,
    now: dt.datetime,
) -> t.Evaluation:
    """述职评议: one evaluation per supporter; a second one replaces the first."""
    rating = RATINGS.get(rating, rating)
    if rating not in RATINGS.values():
        raise BadInput("rating", reason="usage")
    if proposal.community_id != resident.community_id:
        raise NotFound(what=proposal.number)
    if proposal.stage not in (ProposalStage.DONE, ProposalStage.EVALUATED):
        raise WrongStage(number=proposal.number)
    if resident.id not in {r.id for r in supporters(session, proposal)}:
        raise NotYours(number=proposal.number)
    row = session.scalars(
        select(t.Evaluation).where(
            col(t.Evaluation.proposal_id) == proposal.id,
            col(t.Evaluation.resident_id) == resident.id,
        )
    ).first()
    if row is None:
        row = t.Evaluation(
            proposal_id=proposal.id or 0,
            resident_id=resident.id or 0,
            rating=rating,
            comment=comment,
            created_at=now,
        )
        session.add(row)
    else:
        row.rating, row.comment, row.created_at = rating, comment or row.comment, now
    record(session, proposal, "evaluated", now, resident=resident, note=comment, rating=rating)
    proposal.stage = ProposalStage.EVALUATED
    _rate_execution_case(session, proposal, resident, rating, comment, now)
    session.flush()
    return row


def _rate_execution_case(session: Session, proposal: t.Proposal, resident: t.Resident,
                         rating: str, comment: str, now: dt.datetime) -> None:
    """The proposer's evaluation rates the execution case, which was opened in their name, and
    closes it as a rating does: they are asked once about the work, and neither the case desk's
    follow-up visit nor its rating buttons have anything left to ask. An unsatisfied evaluation
    goes to the council's evaluation meeting rather than reopening it."""
    case = session.get(t.Case, proposal.case_id) if proposal.case_id else None
    if case is None or case.resident_id != resident.id or case.state != CaseState.RESOLVED:
        return
    lifecycle.rate_by_evaluation(session, case, resident, rating, comment, now, proposal=proposal.number)


def comment(
    session: Session, proposal: t.Proposal, resident: t.Resident, text: str, now: dt.datetime
) -> None:
    """Add the comment that follows an evaluation button."""
    row = session.scalars(
        select(t.Evaluation).where(
            col(t.Evaluation.proposal_id) == proposal.id,
            col(t.Evaluation.resident_id) == resident.id,
        )
    ).first()
    if row is None:
        raise WrongStage(number=proposal.number)
    row.comment = text.strip()
    record(session, proposal, "evaluation_commented", now, resident=resident, note=row.comment)
    case = session.get(t.Case, proposal.case_id) if proposal.case_id else None
    if case is not None and case.resident_id == resident.id and case.rating is not None:
        case.rating_comment = row.comment


def evaluation_counts(session: Session, proposal: t.Proposal) -> dict[str, int]:
    counts = {v: 0 for v in RATINGS.values()}
    for row in session.scalars(
        select(t.Evaluation).where(col(t.Evaluation.proposal_id) == proposal.id)
    ):
        counts[row.rating] = counts.get(row.rating, 0) + 1
    return counts


# --------------------------------------------------------------------------- the secretary


def _check_open(proposal: t.Proposal) -> None:
    if proposal.stage not in OPEN_PROPOSAL_STAGES:
        raise WrongStage(number=proposal.number)


def schedule(
    session: Session,
    person: t.Person,
    kind: str,
    starts_at: dt.datetime,
    place: str,
    now: dt.datetime,
    *,
    notify: bool = False,
) -> tuple[t.Meeting, list[t.Proposal]]:
    """Schedule a meeting and pick up what waits for one of its kind.

    A collection meeting takes the collected proposals that have no meeting; a discussion or
    decision meeting takes the proposals of that stage not yet placed on one; an evaluation
    meeting takes the adopted proposals in execution or done. With `notify`, every resident of
    the community who has written to us hears of the meeting.
    """
    check_secretary(session, person)
    if kind not in MEETING_OF_KIND:
        raise BadInput("kind", reason="usage")
    if starts_at <= now:
        raise BadInput("past", reason="council_past")
    community = _community(session, person.community_id)
    row = t.Meeting(
        community_id=community.id or 0,
        kind=kind,
        starts_at=starts_at,
        place=place.strip(),
        created_by_id=person.id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    column = getattr(t.Proposal, MEETING_OF_KIND[MeetingKind(kind)])
    waiting_stage: tuple[str, ...] = {
        MeetingKind.COLLECTION: (ProposalStage.COLLECTED,),
        MeetingKind.DISCUSSION: (ProposalStage.DISCUSSION,),
        MeetingKind.DECISION: (ProposalStage.DECISION,),
        MeetingKind.EVALUATION: DONE_STAGES,
    }[MeetingKind(kind)]
    picked = list(
        session.scalars(
            select(t.Proposal)
            .where(
                col(t.Proposal.community_id) == community.id,
                col(t.Proposal.stage).in_(waiting_stage),
                column.is_(None),
            )
            .order_by(col(t.Proposal.id))
        )
    )
    for proposal in picked:
        setattr(proposal, MEETING_OF_KIND[MeetingKind(kind)], row.id)
        if kind == MeetingKind.COLLECTION:
            proposal.stage = ProposalStage.ON_AGENDA
            record(session, proposal, "on_agenda", now, person=person, meeting=row.id)
            _tell_stage(session, proposal, row, now)
        elif kind in (MeetingKind.DISCUSSION, MeetingKind.DECISION):
            record(session, proposal, "placed", now, person=person, meeting=row.id)
            _tell_stage(session, proposal, row, now)
        else:
            record(session, proposal, "placed", now, person=person, meeting=row.id)
    if notify:
        _notify_residents(session, community, row, now)
    return row, picked


def _notify_residents(
    session: Session, community: t.Community, row: t.Meeting, now: dt.datetime
) -> None:
    """Residents of the community who can be reached on a channel they already use."""
    reachable = session.scalars(
        select(t.Resident)
        .where(
            col(t.Resident.community_id) == community.id,
            col(t.Resident.id).in_(
                select(col(t.Identity.resident_id)).where(col(t.Identity.resident_id).is_not(None))
            ),
        )
        .order_by(col(t.Resident.id))
    )
    for resident in reachable:
        tell(
            session,
            now,
            "council.meeting_notice",
            resident=resident,
            council=council_name(community),
            kind=phrase(f"meeting.{row.kind}"),
            at=moment(row.starts_at, community.timezone),
            place=row.place,
            dedupe_key=f"meeting:{row.id}:{resident.id}",
        )


def _tell_stage(
    session: Session, proposal: t.Proposal, row: t.Meeting | None, now: dt.datetime
) -> None:
    """Supporters hear where their proposal goes next (with the meeting when one is scheduled)."""
    tz = _tz(session, proposal)
    where = _meeting_or_unscheduled(row, tz)
    for resident in supporters(session, proposal):
        tell(
            session,
            now,
            f"council.stage_{proposal.stage}",
            resident=resident,
            prefer=proposal.channel,
            number=proposal.number,
            title=proposal.title,
            meeting=where,
        )


def _move(
    session: Session,
    proposal: t.Proposal,
    stage: ProposalStage,
    kind: MeetingKind,
    now: dt.datetime,
    *,
    person: t.Person | None,
    note: str = "",
    **data: Any,
) -> t.Meeting | None:
    """Place a proposal on the next meeting of `kind` (or mark it for one) and tell its supporters."""
    upcoming = next_meeting(session, proposal.community_id, kind, now)
    proposal.stage = stage
    setattr(proposal, MEETING_OF_KIND[kind], upcoming.id if upcoming else None)
    record(
        session,
        proposal,
        str(stage),
        now,
        person=person,
        note=note,
        meeting=upcoming.id if upcoming else None,
        **data,
    )
    _tell_stage(session, proposal, upcoming, now)
    return upcoming


def to_discussion(
    session: Session, proposal: t.Proposal, person: t.Person, now: dt.datetime
) -> t.Meeting | None:
    """Select a collected proposal for the next discussion meeting (议题讨论会)."""
    check_secretary(session, person)
    _same_community(proposal, person)
    if proposal.stage not in (ProposalStage.COLLECTED, ProposalStage.ON_AGENDA):
        raise WrongStage(number=proposal.number)
    return _move(
        session, proposal, ProposalStage.DISCUSSION, MeetingKind.DISCUSSION, now, person=person
    )


def to_decision(
    session: Session, proposal: t.Proposal, person: t.Person, now: dt.datetime
) -> t.Meeting | None:
    """Put a discussed proposal before the next decision meeting (议事决策会)."""
    check_secretary(session, person)
    _same_community(proposal, person)
    if proposal.stage != ProposalStage.DISCUSSION:
        raise WrongStage(number=proposal.number)
    return _move(
        session, proposal, ProposalStage.DECISION, MeetingKind.DECISION, now, person=person
    )


def check_threshold(session: Session, proposal: t.Proposal, now: dt.datetime) -> bool:
    """Enough co-signatures put a collected proposal on the next discussion meeting, once."""
    community = _community(session, proposal.community_id)
    if proposal.stage not in (ProposalStage.COLLECTED, ProposalStage.ON_AGENDA):
        return False
    count = co_sign_count(session, proposal)
    if count < community.co_sign_threshold:
        return False
    dedupe = f"threshold:{proposal.id}"
    if (
        session.scalars(select(col(t.Outbox.id)).where(col(t.Outbox.dedupe_key) == dedupe)).first()
        is not None
    ):
        return False
    upcoming = _move(
        session,
        proposal,
        ProposalStage.DISCUSSION,
        MeetingKind.DISCUSSION,
        now,
        person=None,
        note="threshold",
        co_signs=count,
    )
    for i, secretary in enumerate(secretaries(session, community, now)):
        tell(
            session,
            now,
            "council.threshold_for_secretary",
            person=secretary,
            dedupe_key=dedupe if i == 0 else f"{dedupe}:{secretary.id}",
            number=proposal.number,
            title=proposal.title,
            count=count,
            meeting=_meeting_or_unscheduled(upcoming, community.timezone),
        )
    return True


def _same_community(proposal: t.Proposal, person: t.Person) -> None:
    if proposal.community_id != person.community_id:
        raise NotFound(what=proposal.number)


def merge(
    session: Session, source: t.Proposal, target: t.Proposal, person: t.Person, now: dt.datetime
) -> int:
    """Fold a duplicate into another proposal; its proposer and co-signers now support the target.

    Returns the target's co-sign count. A resident who supported both counts once.
    """
    check_secretary(session, person)
    _same_community(source, person)
    _same_community(target, person)
    if source.id == target.id:
        raise BadInput("same", reason="usage")
    _check_open(source)
    _check_open(target)
    moved = 0
    for resident in supporters(session, source):
        if resident.id == target.proposer_id or _signed(session, target, resident.id or 0):
            continue
        session.add(
            t.CoSign(proposal_id=target.id or 0, resident_id=resident.id or 0, created_at=now)
        )
        moved += 1
    session.flush()
    source.stage = ProposalStage.MERGED
    source.merged_into_id = target.id
    record(session, source, "merged", now, person=person, note=target.number, into=target.id)
    record(
        session,
        target,
        "merged_in",
        now,
        person=person,
        note=source.number,
        source=source.id,
        signatures_added=moved,
    )
    _tell_supporters(
        session, source, "council.merged", now, into=target.number, into_title=target.title
    )
    check_threshold(session, target, now)
    return co_sign_count(session, target)


def reject(
    session: Session,
    proposal: t.Proposal,
    person: t.Person,
    reason: str,
    now: dt.datetime,
    *,
    case: t.Case | None = None,
) -> None:
    """Out of the council's scope: the proposer and co-signers are told why."""
    check_secretary(session, person)
    _same_community(proposal, person)
    _check_open(proposal)
    if not reason.strip() and case is None:
        raise BadInput("no reason", reason="usage")
    proposal.stage = ProposalStage.REJECTED
    proposal.reason = reason.strip()
    proposal.decided_at = now
    if case is not None:
        proposal.case_id = case.id
        record(
            session,
            proposal,
            "rejected",
            now,
            person=person,
            note=proposal.reason,
            case=case.number,
        )
        _tell_supporters(
            session,
            proposal,
            "council.rejected_as_case",
            now,
            reason=proposal.reason,
            case_number=case.number,
        )
    else:
        record(session, proposal, "rejected", now, person=person, note=proposal.reason)
        _tell_supporters(session, proposal, "council.rejected", now, reason=proposal.reason)


def to_case(
    session: Session, proposal: t.Proposal, person: t.Person, kind: str, note: str, now: dt.datetime
) -> lifecycle.Opened:
    """A request or complaint filed as a proposal: open it as the proposer's case, reject the proposal."""
    check_secretary(session, person)
    _same_community(proposal, person)
    _check_open(proposal)
    if kind not in (t.CaseKind.SERVICE_REQUEST, t.CaseKind.COMPLAINT):
        raise BadInput("kind", reason="usage")
    proposer = session.get(t.Resident, proposal.proposer_id)
    assert proposer is not None
    opened = lifecycle.open_case(
        session,
        resident=proposer,
        kind=kind,
        category=proposal.category,
        urgent=False,
        text=proposal.text,
        lang=proposal.lang,
        channel=proposal.channel,
        now=now,
    )
    reason = note.strip() or say(proposal.lang, "council.reason_is_a_case")
    reject(session, proposal, person, reason, now, case=opened.case)
    return opened


def check_decision_due(session: Session, proposal: t.Proposal, person: t.Person,
                       now: dt.datetime) -> None:
    """Whether `person` may record the council's decision on `proposal` now: the secretary, on a
    proposal still open, and not before the day of the decision meeting it was put before (a
    meeting actually held on another day is moved to that day first). MeetingNotHeld names it."""
    check_secretary(session, person)
    _same_community(proposal, person)
    if proposal.stage not in OPEN_PROPOSAL_STAGES:
        raise WrongStage(number=proposal.number)
    row = session.get(t.Meeting, proposal.decision_meeting_id) if proposal.decision_meeting_id else None
    if row is None:
        return
    calendar = directory.calendar_of(_community(session, proposal.community_id))
    day = calendar.local_date(row.starts_at)
    if calendar.local_date(now) < day:
        raise MeetingNotHeld(number=proposal.number, id=row.id, day=day.isoformat())


def move_meeting(session: Session, person: t.Person, row: t.Meeting, day: dt.date,
                 now: dt.datetime) -> dt.date:
    """Move a meeting to another day at the same local time: the day it was actually held (past
    days allowed, so a decision taken then can be recorded) or a later one. Every proposal on
    it records the move. Returns the day it was set for before."""
    check_secretary(session, person)
    if row.community_id != person.community_id:
        raise NotFound(what=str(row.id))
    calendar = directory.calendar_of(_community(session, row.community_id))
    local = calendar.to_local(row.starts_at)
    was = local.date()
    row.starts_at = calendar.to_utc(dt.datetime.combine(day, local.time()))
    column = getattr(t.Proposal, MEETING_OF_KIND[MeetingKind(row.kind)])
    for proposal in session.scalars(select(t.Proposal).where(column == row.id).order_by(col(t.Proposal.id))):
        record(session, proposal, "meeting_moved", now, person=person, note=day.isoformat(),
               meeting=row.id, was=was.isoformat())
    session.flush()
    return was


def _deadline(community: t.Community, day: dt.date) -> dt.datetime:
    """The end of the working day `day`, in UTC."""
    calendar = directory.calendar_of(community)
    return calendar.to_utc(dt.datetime.combine(day, community.work_end))


def adopt(
    session: Session,
    proposal: t.Proposal,
    person: t.Person,
    decision: str,
    due: dt.date,
    now: dt.datetime,
    *,
    post_code: str | None = None,
) -> lifecycle.Opened:
    """Record an adoption and open the execution case for the executing post (default: service)."""
    check_decision_due(session, proposal, person, now)
    if not decision.strip():
        raise BadInput("no decision", reason="usage")
    community = _community(session, proposal.community_id)
    post = _executing_post(session, community, post_code)
    proposal.stage = ProposalStage.ADOPTED
    proposal.decision_text = decision.strip()
    proposal.executing_post_id = post.id
    proposal.execution_due = _deadline(community, due)
    proposal.decided_at = now
    record(
        session,
        proposal,
        "adopted",
        now,
        person=person,
        note=proposal.decision_text,
        post=post.code,
        due=due.isoformat(),
    )
    _tell_supporters(
        session,
        proposal,
        "council.adopted",
        now,
        decision=proposal.decision_text,
        due=moment(proposal.execution_due or now, community.timezone),
    )
    proposer = session.get(t.Resident, proposal.proposer_id)
    assert proposer is not None
    opened = lifecycle.open_case(
        session,
        resident=proposer,
        kind=t.CaseKind.SERVICE_REQUEST,
        category=proposal.category,
        urgent=False,
        text=say(
            proposal.lang,
            "council.execution_case_text",
            number=proposal.number,
            title=proposal.title,
            decision=proposal.decision_text,
            due=when(proposal.lang, proposal.execution_due, community.timezone),
        ),
        lang=proposal.lang,
        channel=proposal.channel,
        now=now,
        proposal_id=proposal.id,
        post_code=post.code,
    )
    proposal.case_id = opened.case.id
    proposal.stage = ProposalStage.IN_EXECUTION
    record(
        session,
        proposal,
        "in_execution",
        now,
        person=person,
        case=opened.case.number,
        post=post.code,
        holder=opened.holder.code,
    )
    _tell_supporters(
        session,
        proposal,
        "council.in_execution",
        now,
        post=post.name,
        name=opened.holder.name,
        due=moment(proposal.execution_due or now, community.timezone),
        case_number=opened.case.number,
    )
    return opened



def _executing_post(session: Session, community: t.Community, post_code: str | None) -> t.Post:
    if post_code:
        return directory.post_by_code(session, community.id or 0, post_code)
    service = session.scalars(
        select(t.Post)
        .where(
            col(t.Post.community_id) == community.id,
            col(t.Post.kind) == "service",
            col(t.Post.active).is_(True),
        )
        .order_by(col(t.Post.code))
    ).first()
    if service is None:
        raise NotFound(what="service")
    return service


def not_adopt(
    session: Session, proposal: t.Proposal, person: t.Person, reason: str, now: dt.datetime
) -> None:
    """Record that the council decided against the proposal, with the reason supporters are given."""
    check_decision_due(session, proposal, person, now)
    if not reason.strip():
        raise BadInput("no reason", reason="usage")
    proposal.stage = ProposalStage.NOT_ADOPTED
    proposal.reason = reason.strip()
    proposal.decided_at = now
    record(session, proposal, "not_adopted", now, person=person, note=proposal.reason)
    _tell_supporters(session, proposal, "council.not_adopted", now, reason=proposal.reason)


def evaluation_buttons(proposal: t.Proposal) -> list[list[tuple[str, str]]]:
    pid = proposal.id
    return [
        [("rating.satisfied", f"pe:{pid}:s"), ("rating.basically_satisfied", f"pe:{pid}:b")],
        [("rating.unsatisfied", f"pe:{pid}:u")],
    ]


def execution_resolved(session: Session, case: t.Case, person: t.Person, note: str,
                       now: dt.datetime) -> bool:
    """The execution case was resolved: the proposal is done; its supporters evaluate it (述职评议).

    True when they were asked: the proposer's evaluation is then the execution case's rating too
    (`evaluate`), so the case desk does not ask the proposer a second time.
    """
    if case.proposal_id is None:
        return False
    proposal = session.get(t.Proposal, case.proposal_id)
    if proposal is None or proposal.stage != ProposalStage.IN_EXECUTION:
        return False
    proposal.stage = ProposalStage.DONE
    proposal.done_at = now
    record(session, proposal, "done", now, person=person, case=case.number)
    _tell_supporters(session, proposal, "council.done", now, buttons=evaluation_buttons(proposal),
                     name=person.name, note=note)
    community = _community(session, proposal.community_id)
    _tell_secretaries(session, community, now, "council.done_for_secretary", proposal,
                      case_number=case.number)
    return True


lifecycle.on_resolved("proposal", execution_resolved)


# --------------------------------------------------------------------------- agenda


@dataclass(frozen=True)
class AgendaItem:
    proposal: t.Proposal
    co_signs: int
    duplicates: tuple[t.Proposal, ...]


def agenda(session: Session, row: t.Meeting) -> list[AgendaItem]:
    """The proposals of a meeting, most supported first, with possible duplicates flagged."""
    column = getattr(t.Proposal, MEETING_OF_KIND[MeetingKind(row.kind)])
    items = list(
        session.scalars(select(t.Proposal).where(column == row.id).order_by(col(t.Proposal.id)))
    )
    return _ranked(session, items)


def unplaced(session: Session, community_id: int) -> list[AgendaItem]:
    """Collected proposals waiting for a collection meeting to be scheduled."""
    items = list(
        session.scalars(
            select(t.Proposal)
            .where(
                col(t.Proposal.community_id) == community_id,
                col(t.Proposal.stage) == ProposalStage.COLLECTED,
            )
            .order_by(col(t.Proposal.id))
        )
    )
    return _ranked(session, items)


def _ranked(session: Session, items: list[t.Proposal]) -> list[AgendaItem]:
    counts = {p.id: co_sign_count(session, p) for p in items}
    open_items = [p for p in items if p.stage in OPEN_PROPOSAL_STAGES]
    dups = duplicates(open_items) if len(open_items) > 1 else {}
    ranked = sorted(items, key=lambda p: (-counts[p.id], p.id or 0))
    return [AgendaItem(p, counts[p.id], tuple(dups.get(p.id or 0, ()))) for p in ranked]


def current_collection_meeting(
    session: Session, community_id: int, now: dt.datetime
) -> t.Meeting | None:
    """The next collection meeting, else the latest one held."""
    upcoming = next_meeting(session, community_id, MeetingKind.COLLECTION, now)
    if upcoming is not None:
        return upcoming
    return session.scalars(
        select(t.Meeting)
        .where(col(t.Meeting.community_id) == community_id,
               col(t.Meeting.kind) == MeetingKind.COLLECTION)
        .order_by(col(t.Meeting.starts_at).desc(), col(t.Meeting.id).desc())
    ).first()


def proposals_of_resident(session: Session, resident: t.Resident) -> list[t.Proposal]:
    """What the resident proposed or co-signed."""
    signed = select(col(t.CoSign.proposal_id)).where(col(t.CoSign.resident_id) == resident.id)
    return list(
        session.scalars(
            select(t.Proposal)
            .where(or_(col(t.Proposal.proposer_id) == resident.id, col(t.Proposal.id).in_(signed)))
            .order_by(col(t.Proposal.id).desc())
        )
    )
