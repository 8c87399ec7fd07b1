"""Kept media: the bytes of photos and voice messages residents sent.

A platform's own reference to a resident's photo (a WeChat MediaId or PicUrl) stops working after
a few days, so the bytes are stored while the message is handled, and an attachment refers to
them as "media:<id>":

    row = media.put(session, data, "image/jpeg")
    attachment_ref = media.ref_of(row)          # "media:7"
    media.get(session, media.id_in(attachment_ref))

The same bytes are stored once: putting them again returns the row that holds them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.tables import Media

# WeChat's limit for an image (voice messages are at most 2 MB); more is not a resident's photo.
MAX_MEDIA_BYTES = 10 * 1024 * 1024
REF_PREFIX = "media:"
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")


class MediaRefused(ValueError):
    """Bytes that are not stored: empty, over MAX_MEDIA_BYTES, or of no valid content type."""


def normalise_content_type(value: str) -> str:
    """"Image/JPEG; charset=x" → "image/jpeg"; anything that is not type/subtype is refused."""
    bare = (value or "").split(";", 1)[0].strip().lower()
    if not _CONTENT_TYPE.fullmatch(bare):
        raise MediaRefused(f"{value!r} is not a content type")
    return bare


def put(session: Session, data: bytes, content_type: str, *, now: dt.datetime | None = None) -> Media:
    """Store `data` in the caller's transaction and return its row (the existing one when the same
    bytes are already stored). MediaRefused when empty, over MAX_MEDIA_BYTES or mistyped."""
    if not data:
        raise MediaRefused("no bytes to store")
    if len(data) > MAX_MEDIA_BYTES:
        raise MediaRefused(
            f"the media is {len(data)} bytes, over the limit of {MAX_MEDIA_BYTES} bytes (MAX_MEDIA_BYTES)")
    kind = normalise_content_type(content_type)
    digest = hashlib.sha256(data).hexdigest()
    # Two transactions storing the same bytes at the same moment may both insert; that costs one
    # extra copy and nothing else, so the index is not unique and no lock is taken.
    existing = session.scalars(
        select(Media)
        .where(col(Media.sha256) == digest, col(Media.size) == len(data))
        .order_by(col(Media.id))
    ).first()
    if existing is not None:
        # Stored again now: an orphan about to be purged (storage.retention) is wanted again.
        existing.created_at = now or dt.datetime.now(dt.UTC)
        return existing
    row = Media(sha256=digest, content_type=kind, size=len(data), data=bytes(data),
                created_at=now or dt.datetime.now(dt.UTC))
    session.add(row)
    session.flush()
    return row


def get(session: Session, media_id: int) -> Media | None:
    return session.get(Media, media_id)


def content_types(session: Session, media_ids: Sequence[int]) -> dict[int, str]:
    """The content type of each kept id among `media_ids` (without reading the bytes)."""
    rows = session.execute(select(col(Media.id), col(Media.content_type))
                           .where(col(Media.id).in_(list(media_ids))))
    return {media_id: content_type for media_id, content_type in rows if media_id is not None}


def ref_of(row: Media) -> str:
    """What an attachment stores to refer to kept bytes."""
    return f"{REF_PREFIX}{row.id}"


def id_in(ref: str) -> int | None:
    """The Media id an attachment's ref points to, or None for any other reference."""
    if not ref.startswith(REF_PREFIX):
        return None
    rest = ref.removeprefix(REF_PREFIX)
    return int(rest) if rest.isdigit() and len(rest) <= 18 else None
