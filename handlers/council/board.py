"""The council board: the community's proposals in columns by their step of 三会一评, with
co-signature counts, and the meetings with their papers.

    board = board.board(session, secretary, now)

Columns: collection (collected, on the agenda of a collection meeting), discussion, decision,
execution (adopted, being executed), evaluation (executed and put to the residents, evaluated).
Proposals that left the path (not adopted, rejected, merged) are listed apart as closed. The
board is the secretary's and the director's, as /agenda and /meetings are in chat.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.council import proposals
from storage import tables as t
from storage.tables import ProposalStage

COLUMNS: dict[str, tuple[str, ...]] = {
    "collection": (ProposalStage.COLLECTED, ProposalStage.ON_AGENDA),
    "discussion": (ProposalStage.DISCUSSION,),
    "decision": (ProposalStage.DECISION,),
    "execution": (ProposalStage.ADOPTED, ProposalStage.IN_EXECUTION),
    "evaluation": (ProposalStage.DONE, ProposalStage.EVALUATED),
}
CLOSED = (ProposalStage.NOT_ADOPTED, ProposalStage.REJECTED, ProposalStage.MERGED)


@dataclass(frozen=True)
class Card:
    proposal: t.Proposal
    co_signs: int


@dataclass(frozen=True)
class MeetingLine:
    meeting: t.Meeting
    items: int
    held: bool


@dataclass(frozen=True)
class Board:
    columns: dict[str, list[Card]]
    closed: list[Card]
    meetings: list[MeetingLine]
    threshold: int


def board(session: Session, person: t.Person, now: dt.datetime) -> Board:
    """The board of the person's community; NotSecretary for anyone but the secretary and director."""
    proposals.check_secretary(session, person)
    community_id = person.community_id
    listed = proposals.of_community(session, community_id)
    counts: dict[int, int] = {proposal_id: count for proposal_id, count in session.execute(
        select(col(t.CoSign.proposal_id), func.count()).join(t.Proposal, col(t.Proposal.id) == col(t.CoSign.proposal_id))
        .where(col(t.Proposal.community_id) == community_id).group_by(col(t.CoSign.proposal_id)))}
    cards = [Card(p, counts.get(p.id or 0, 0)) for p in listed]
    columns = {name: sorted((c for c in cards if c.proposal.stage in stages),
                            key=lambda c: (-c.co_signs, c.proposal.id or 0))
               for name, stages in COLUMNS.items()}
    closed = [c for c in cards if c.proposal.stage in CLOSED]
    meetings = [MeetingLine(m, len(proposals.agenda(session, m)), m.starts_at <= now)
                for m in proposals.meetings_of(session, community_id)]
    community = session.get(t.Community, community_id)
    return Board(columns=columns, closed=closed, meetings=meetings,
                 threshold=community.co_sign_threshold if community else 0)
