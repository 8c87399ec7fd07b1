"""Kept media on SQLite and PostgreSQL: bytes in and out unchanged, stored once, capped."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from storage import media
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.fakes.wechat import tiny_png


def rows(engine: Engine) -> int:
    with UnitOfWork(engine) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(t.Media)) or 0)


def test_bytes_come_back_unchanged_with_their_content_type(engine: Engine, clock: FixedClock) -> None:
    png = tiny_png((200, 30, 30))
    # Every byte value, NUL included, survives (bytea on PostgreSQL, a BLOB on SQLite).
    every_byte = bytes(range(256)) * 4 + os.urandom(1024)
    with UnitOfWork(engine) as uow:
        photo = media.put(uow.session, png, "Image/PNG; charset=binary", now=clock.now())
        blob = media.put(uow.session, every_byte, "application/octet-stream", now=clock.now())
        uow.commit()
        photo_id, blob_id = photo.id, blob.id
    assert photo_id is not None and blob_id is not None
    with UnitOfWork(engine) as uow:
        got = media.get(uow.session, photo_id)
        assert got is not None
        assert (got.data, got.content_type, got.size) == (png, "image/png", len(png))
        assert got.created_at == clock.now()
        other = media.get(uow.session, blob_id)
        assert other is not None and other.data == every_byte
        assert media.get(uow.session, blob_id + 1000) is None


def test_the_same_bytes_twice_are_one_row(engine: Engine) -> None:
    png = tiny_png((1, 2, 3))
    with UnitOfWork(engine) as uow:
        first = media.put(uow.session, png, "image/png")
        uow.commit()
        first_id = first.id
    with UnitOfWork(engine) as uow:
        again = media.put(uow.session, png, "image/png")
        different = media.put(uow.session, tiny_png((3, 2, 1)), "image/png")
        uow.commit()
        assert again.id == first_id and different.id != first_id
    assert rows(engine) == 2


def test_refs_name_the_kept_row_and_nothing_else() -> None:
    row = t.Media(id=7, sha256="0" * 64, content_type="image/png", size=1, data=b"x",
                  created_at=dt.datetime.now(dt.UTC))
    assert media.ref_of(row) == "media:7"
    assert media.id_in("media:7") == 7
    for other in ("MEDIA123", "http://mmbiz.qpic.cn/x/0", "media:", "media:-1", "media:7x", ""):
        assert media.id_in(other) is None, other


@pytest.mark.parametrize("data, content_type, why", [
    (b"", "image/png", "no bytes"),
    (b"x" * (media.MAX_MEDIA_BYTES + 1), "image/jpeg", "over the limit"),
    (b"x", "", "not a content type"),
    (b"x", "image", "not a content type"),
    (b"x", "text/html\r\nX-Evil: 1", "not a content type"),
])
def test_what_is_not_stored_is_refused_clearly(sqlite_url: str, data: bytes, content_type: str,
                                                why: str) -> None:
    from storage import db

    engine = db.make_engine(sqlite_url)
    try:
        with UnitOfWork(engine) as uow, pytest.raises(media.MediaRefused, match=why):
            media.put(uow.session, data, content_type)
        assert rows(engine) == 0
    finally:
        engine.dispose()


def test_ten_megabytes_exactly_is_stored(sqlite_url: str) -> None:
    from storage import db

    engine = db.make_engine(sqlite_url)
    try:
        with UnitOfWork(engine) as uow:
            row = media.put(uow.session, b"\xff" * media.MAX_MEDIA_BYTES, "image/jpeg")
            uow.commit()
            assert row.size == 10 * 1024 * 1024
    finally:
        engine.dispose()
