"""The offer of similar open proposals before filing a new one, on SQLite and PostgreSQL: the
proposals are compared as they read now, and each is shown with its own co-sign count."""

from __future__ import annotations

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity
from sqlalchemy import select, update
from sqlmodel import col

from bot.app import Services
from handlers.council import proposals
from storage import tables as t
from storage.tables import OPEN_PROPOSAL_STAGES
from storage.unit_of_work import UnitOfWork
from tests.chat import PROPOSAL, Chat, Said

GYM = "建议在中南小区3栋旁边增设一组健身器材，方便老人锻炼"
GYM_AGAIN = "我建议小区里增设健身器材，老人没地方锻炼"


def _offered(said: Said) -> list[str]:
    """The proposals offered to co-sign instead, in the order shown."""
    actions = [b.action for r in said.replies for row in r.buttons for b in row]
    return [action for action in actions if action.startswith("cs:")]


def _expected(services: Services, text: str) -> list[str]:
    """The open proposals that read like `text` by scikit-learn's TF-IDF and cosine similarity
    over their texts as they are in the database now, as `cs:` actions."""
    with UnitOfWork(services.engine) as uow:
        rows = uow.session.execute(
            select(col(t.Proposal.id), col(t.Proposal.title), col(t.Proposal.text))
            .where(col(t.Proposal.stage).in_(OPEN_PROPOSAL_STAGES))
            .order_by(col(t.Proposal.id))
        ).all()
    texts = [text] + [f"{title} {body}" for _, title, body in rows]
    docs = [proposals.normalise(x) or " " for x in texts]
    tfidf = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), lowercase=False)
    vectors = tfidf.fit_transform(docs)
    scores = cosine_similarity(vectors[:1], vectors[1:])[0]
    ranked = sorted(
        (-score, pid)
        for score, (pid, _, _) in zip(scores, rows, strict=True)
        if score >= proposals.SIMILAR_ABOVE
    )
    return [f"cs:{pid}" for _, pid in ranked[: proposals.MAX_SIMILAR]]


def _similar_numbers(services: Services, text: str) -> list[str]:
    with UnitOfWork(services.engine) as uow:
        resident = uow.session.scalars(select(t.Resident).order_by(col(t.Resident.id))).first()
        assert resident is not None
        return [p.number for p in proposals.similar_open(uow.session, resident.community_id, text)]


async def test_an_edited_proposal_is_compared_by_how_it_reads_now(
    chat: Chat, services: Services
) -> None:
    gym = await chat.resident(0).proposes(GYM)
    gate = await chat.resident(1).proposes("建议把小区东门改为24小时开放")
    said = await chat.resident(2).says(GYM_AGAIN)
    assert _offered(said) == _expected(services, GYM_AGAIN) and len(_offered(said)) == 1
    assert gym in said.text and gate not in said.text
    assert _similar_numbers(services, GYM_AGAIN) == [gym]

    # The proposer retitles it and its text is edited: it is about the east gate now.
    said = await chat.resident(0).says(f"/retitle {gym} 东门夜间开放")
    assert "东门夜间开放" in said.text
    with UnitOfWork(services.engine) as uow:
        uow.session.execute(
            update(t.Proposal)
            .where(col(t.Proposal.number) == gym)
            .values(text="建议小区东门晚上也开放，方便下夜班的居民")
        )
        uow.commit()
    assert _similar_numbers(services, GYM_AGAIN) == []
    said = await chat.resident(2).says(GYM_AGAIN)  # no offer this time: filed at once
    assert not _offered(said)
    filed = PROPOSAL.search(said.text)
    assert filed and filed.group(0) not in (gym, gate), said.text

    gate_again = "建议东门晚上也开放"
    said = await chat.resident(3).says(gate_again)
    assert _offered(said) == _expected(services, gate_again) and len(_offered(said)) == 1
    assert _similar_numbers(services, gate_again) == [gym]
    assert gym in said.text and "东门夜间开放" in said.text


async def test_the_offer_shows_each_proposals_own_co_sign_count(
    chat: Chat, services: Services
) -> None:
    signed = await chat.resident(0).proposes("建议在小区门口设置快递柜")
    unsigned = await chat.resident(1).proposes("建议在小区门口设置智能快递柜，取件方便")
    await chat.resident(2).says(f"/cosign {signed}")
    await chat.resident(3).says(f"/cosign {signed}")

    said = await chat.resident(4).says("建议在小区门口增设快递柜")
    lines = said.text.splitlines()
    assert "（已有 2 人附议）" in next(line for line in lines if signed in line)
    assert "（已有 0 人附议）" in next(line for line in lines if unsigned in line)

    with UnitOfWork(services.engine) as uow:
        rows = uow.session.scalars(select(t.Proposal).order_by(col(t.Proposal.id))).all()
        assert proposals.co_sign_counts(uow.session, rows) == {rows[0].id: 2, rows[1].id: 0}
        assert proposals.co_sign_counts(uow.session, []) == {}
