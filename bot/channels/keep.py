"""Keeping what a resident sent: a channel's photo or voice message stored while it is handled.

A platform's own reference (a WeChat MediaId, a Telegram file_id) is only good for as long as
the platform keeps the file, and staff on another channel cannot open it at all. So the bytes
are fetched and stored (storage.media) and the attachment refers to the kept copy instead:

    incoming = keep_media(engine, incoming, media_id, lambda: download(media_id), now)

A channel passes this to the pipeline as `prepare`, so it runs under the address's lock: the
description typed right after a photo is read once the photo is kept.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy.engine import Engine

from bot.channels.base import Incoming
from storage import media
from storage.log_context import who
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
# (bytes, content type) of one file, from the platform that holds it.
Fetch = Callable[[], tuple[bytes, str]]
KEPT_KINDS = ("photo", "voice")


class MediaUnavailable(Exception):
    """The platform did not hand over the file: an error answer, an answer that is not the file,
    or a network failure."""


def keep_media(engine: Engine, incoming: Incoming, ref: str, fetch: Fetch,
               now: dt.datetime) -> Incoming:
    """The incoming message with the file `ref` names stored and its attachment referring to the
    kept copy ("media:<id>").

    Whatever goes wrong, the message goes on with the reference it came with: the report is
    never lost for want of its photo. The same bytes are stored once, so a message delivered
    twice costs no second copy.
    """
    try:
        data, content_type = fetch()
        with UnitOfWork(engine) as uow:
            row = media.put(uow.session, data, content_type, now=now)
            kept = media.ref_of(row)
            uow.commit()
    except (MediaUnavailable, media.MediaRefused) as exc:
        log.warning("%s: media %s of %s not kept (%s); the attachment keeps the platform's "
                    "reference", incoming.channel, ref, who(incoming.address), exc)
        return incoming
    except Exception:
        log.warning("%s: media %s of %s not kept; the attachment keeps the platform's reference",
                    incoming.channel, ref, who(incoming.address), exc_info=True)
        return incoming
    attachments = tuple(
        replace(a, ref=kept) if a.ref == ref and a.kind in KEPT_KINDS else a
        for a in incoming.attachments)
    return replace(incoming, attachments=attachments)
