"""How long what residents sent is kept: photos no case refers to, and web chat history.

- A kept photo or voice message that no case refers to (its sender never described the
  problem, or sent it before saying where they live) is deleted ORPHAN_MEDIA_DAYS after its
  bytes were last stored: long past any conversation it could still join, since a message
  waiting for its description expires within hours.
- Web chat lines (storage.chat_history) older than `chat_days` are deleted: the history is there
  to pick a conversation up after a reload, not to keep what residents said for ever. A case
  keeps its own history (CaseEvent) whatever happens to the chat lines.

Both are idempotent deletes by date, safe to run from every process.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import String, cast, delete, exists, literal, select
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.media import REF_PREFIX
from storage.tables import Attachment, ChatLine, Media

ORPHAN_MEDIA_DAYS = 7


@dataclass(frozen=True)
class Purged:
    media: int
    chat_lines: int


def purge(session: Session, now: dt.datetime, *, chat_days: int) -> Purged:
    """Delete orphan media and old chat lines in the caller's transaction."""
    referred = exists(select(col(Attachment.id)).where(
        col(Attachment.ref) == literal(REF_PREFIX).concat(cast(col(Media.id), String))))
    media = session.execute(delete(Media).where(
        col(Media.created_at) < now - dt.timedelta(days=ORPHAN_MEDIA_DAYS), ~referred))
    lines = session.execute(delete(ChatLine).where(
        col(ChatLine.created_at) < now - dt.timedelta(days=chat_days)))
    return Purged(media=media.rowcount or 0, chat_lines=lines.rowcount or 0)  # type: ignore[attr-defined]
