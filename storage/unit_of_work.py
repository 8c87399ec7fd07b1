"""A unit of work: one session, one transaction, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, SessionTransaction

_MEMO = "transaction_memo"


class UnitOfWork:
    """Use as `with UnitOfWork(engine) as uow: ...; uow.commit()`.

    The session does not autoflush: nothing is written before a query (the changes of a message
    go out together at its commit, the new rows of a table in one statement). Code that must
    read back what it added in the same unit flushes first, or keeps what it added.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session: Session

    def __enter__(self) -> Self:
        self.session = Session(self.engine, expire_on_commit=False, autoflush=False)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back what was not committed and detaches objects without expiring them,
        # so values read inside the block stay readable after it.
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


def transaction_memo(session: Session) -> dict[str, Any]:
    """What is kept for the session's current transaction only (a fact read once, the next number
    of a history): forgotten when the transaction commits or rolls back, so nothing read in one
    transaction is trusted in the next."""
    memo: dict[str, Any] = session.info.setdefault(_MEMO, {})
    return memo


@event.listens_for(Session, "after_transaction_end")
def _forget_memo(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_MEMO, None)
        session.info.pop(_AT_SAVEPOINT, None)


# A SAVEPOINT rolled back takes back what was written in it, so the memo must forget what was
# noted in it too: events queued for the commit, history numbers counted on (storage.sequences).
_AT_SAVEPOINT = "transaction_memo_at_savepoint"


def _copied(value: Any) -> Any:
    """Two levels deep: the memo keeps dicts of dicts or lists of plain values."""
    if isinstance(value, dict):
        return {k: list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v
                for k, v in value.items()}
    return list(value) if isinstance(value, list) else value


@event.listens_for(Session, "after_transaction_create")
def _keep_memo_at_savepoint(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        memo = session.info.get(_MEMO, {})
        session.info.setdefault(_AT_SAVEPOINT, {})[id(transaction)] = {k: _copied(v) for k, v in memo.items()}


@event.listens_for(Session, "after_soft_rollback")
def _memo_back_to_savepoint(session: Session, previous_transaction: SessionTransaction) -> None:
    kept = session.info.get(_AT_SAVEPOINT, {}).pop(id(previous_transaction), None)
    if previous_transaction.nested and kept is not None:
        session.info[_MEMO] = kept
