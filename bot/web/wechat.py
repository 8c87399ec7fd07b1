"""`/wechat`: the Official Account's server URL (服务器配置).

GET is the URL check (answer `echostr` verbatim). POST is a push, in plaintext, compat or safe
mode, decided per request from `encrypt_type`:

1. signature (and msg_signature) checked in constant time → 403 and nothing else on failure;
   a `timestamp` more than WECHAT_FRESHNESS_SECONDS from the app's clock → 403; with an
   EncodingAESKey set, a plaintext push → 403 unless WECHAT_ALLOW_PLAIN (in plain mode the
   signature does not cover the body); in compatible mode only the encrypted part is read;
2. body capped, decrypted (current key, then the previous one), parsed without DTDs → 4xx;
3. the (timestamp, nonce) pair is claimed in the shared replay memory (`wc.PushNonces`): a pair
   already used by another message → 403. The same pair with the same message is WeChat's
   own resend and goes on to
4. dedupe on MsgId (events: FromUserName+CreateTime) in the shared StateStore: WeChat's
   retries (with a new or the same timestamp and nonce) answer "success" and create nothing;
5. the resident's held notices are released (they are interacting again);
6. the pipeline runs as a task, after the push's photo or voice message is downloaded and kept
   (MediaIds expire); within `WECHAT_REPLY_BUDGET_SECONDS` its replies become the passive
   reply, else we answer "success" and its replies go out through the outbox as
   customer-service messages. A slow download is thus covered by the same budget. One
   resident's messages are read one after another (the pipeline's lock per address covers the
   download), so a photo is kept before the text that follows it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import select
from sqlmodel import col

from bot.channels import wechat as wc
from bot.channels.base import Incoming, Reply
from bot.web.deps import Services
from handlers.replies import say
from storage import outbox
from storage import tables as t
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
router = APIRouter()
SUCCESS = "success"
_late: set[asyncio.Task[Any]] = set()


def _configured(services: Any) -> str:
    token = services.settings.wechat_token
    if not token:
        raise HTTPException(status_code=404, detail="the WeChat channel is not configured")
    return str(token)


def _success() -> Response:
    return PlainTextResponse(SUCCESS)


@router.get("/wechat", include_in_schema=False)
def verify_url(services: Services, signature: str = "", timestamp: str = "", nonce: str = "",
               echostr: str = "") -> Response:
    token = _configured(services)
    if not echostr or not wc.verify_signature(token, signature, timestamp, nonce):
        return Response(status_code=403)
    return PlainTextResponse(echostr)


@router.post("/wechat", include_in_schema=False)
async def receive(request: Request, services: Services, signature: str = "", timestamp: str = "",
                  nonce: str = "", openid: str = "", encrypt_type: str = "",
                  msg_signature: str = "") -> Response:
    settings = services.settings
    token = _configured(services)
    if not wc.verify_signature(token, signature, timestamp, nonce):
        return Response(status_code=403)
    encrypted = encrypt_type.lower() == "aes"
    key_index = 0
    crypto: wc.CallbackCrypto | None = None
    try:
        wc.check_fresh(timestamp, nonce, services.clock.now(), settings.wechat_freshness_seconds)
        if not encrypted and settings.wechat_encoding_aes_key and not settings.wechat_allow_plain:
            # In plain mode the signature does not cover the body: with a key configured, a
            # plaintext push is a downgrade unless the operator allowed it.
            raise wc.Rejected(403, "a plaintext push while an EncodingAESKey is set "
                                   "(safe or compatible mode only; WECHAT_ALLOW_PLAIN=true allows it)")
        body = await request.body()  # capped at MAX_PUSH_BYTES by bot/web/guard.py
        outer = wc.parse_xml(body)
        if encrypted:
            if not settings.wechat_encoding_aes_key or not settings.wechat_appid:
                raise wc.Rejected(400, "an encrypted push, but no EncodingAESKey is configured")
            crypto = wc.CallbackCrypto(token, settings.wechat_appid, settings.wechat_encoding_aes_key,
                                       settings.wechat_previous_encoding_aes_key)
            if not outer.get("Encrypt"):
                raise wc.Rejected(400, "no Encrypt element")
            plain, key_index = crypto.decrypt(outer["Encrypt"], msg_signature, timestamp, nonce)
            fields = wc.parse_xml(plain)
        elif encrypt_type.lower() in ("", "raw"):
            fields = outer
        else:
            raise wc.Rejected(400, f"unknown encrypt_type {encrypt_type!r}")
        sender_id = fields.get("FromUserName", "")
        if not sender_id or not fields.get("MsgType") or not fields.get("ToUserName"):
            raise wc.Rejected(400, "FromUserName, ToUserName or MsgType is missing")
        if openid and openid != sender_id:
            raise wc.Rejected(400, "the openid does not match FromUserName")
    except wc.Rejected as exc:
        log.warning("wechat push refused (%s): %s", exc.status, exc.reason)
        return Response(status_code=exc.status)

    def answer(text: str) -> Response:
        if not text:
            return _success()
        xml = wc.reply_xml(sender_id, fields["ToUserName"], text, int(time.time()))
        if crypto is not None:
            xml = crypto.encrypt(xml, nonce, timestamp or str(int(time.time())), key_index)
        return Response(xml, media_type="application/xml")

    key = wc.dedupe_key(fields)
    claimed = await anyio.to_thread.run_sync(
        _nonces(request, services).claim, timestamp, nonce, key, services.clock.now())
    if not claimed:
        log.warning("wechat push refused (403): its timestamp and nonce were used by another push")
        return Response(status_code=403)
    if not services.state.first_time(f"wechat:{key}", wc.DEDUPE_TTL):
        # A retry of a push still being handled (or lost on the way back): the first attempt
        # learns of it and sends its answer as a customer-service message.
        services.state.put(f"wechat:retried:{key}", {"at": time.time()}, ttl=wc.DEDUPE_TTL)
        return _success()

    await anyio.to_thread.run_sync(_release_held, services, sender_id)
    services.sender.wake()

    translation = wc.translate(
        fields, number_action=lambda text: wc.number_action(services.state, sender_id, text))
    if translation.incoming is None and translation.text_key is None:
        return _success()
    lang = await anyio.to_thread.run_sync(wc.language_of, services.engine, sender_id)
    if translation.incoming is None:
        assert translation.text_key is not None
        return answer(say(lang, translation.text_key))

    # The runner outlives this request: when the budget runs out (or WeChat hangs up) it sends
    # the replies through the outbox itself; otherwise it hands them back for a passive reply.
    handoff = {"waiting": True}
    runner = asyncio.create_task(_run(services, translation, sender_id, handoff))
    _late.add(runner)
    runner.add_done_callback(_late.discard)
    try:
        await asyncio.wait({runner}, timeout=settings.wechat_reply_budget_seconds)
    except asyncio.CancelledError:
        handoff["waiting"] = False
        finished = runner.result() if runner.done() else None
        if finished is not None:
            _spawn(_enqueue_async(services, sender_id, finished, translation.lead_key))
        raise
    handoff["waiting"] = False
    if not runner.done() or runner.result() is None:
        return _success()
    replies = runner.result()
    assert replies is not None
    services.sender.wake()
    lang = await anyio.to_thread.run_sync(wc.language_of, services.engine, sender_id)
    lead = say(lang, translation.lead_key) if translation.lead_key else ""
    text = await anyio.to_thread.run_sync(wc.render_replies, services.state, lang, sender_id, replies, lead)
    retried = services.state.get(f"wechat:retried:{key}") is not None
    if retried or len(text.encode("utf-8")) > wc.MAX_PASSIVE_BYTES:
        await anyio.to_thread.run_sync(_enqueue, services, sender_id, replies, lead)
        services.sender.wake()
        return _success()
    return answer(text)


def _nonces(request: Request, services: Any) -> wc.PushNonces:
    """The app's replay memory (one per app, so its pruning runs once a minute, not per push)."""
    nonces: wc.PushNonces | None = getattr(request.app.state, "wechat_nonces", None)
    if nonces is None:
        nonces = request.app.state.wechat_nonces = wc.PushNonces(
            state=services.state, engine=services.engine, shared_state=bool(services.settings.redis_url),
            window=services.settings.wechat_freshness_seconds)
    return nonces


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _late.add(task)
    task.add_done_callback(_late.discard)


async def _run(services: Any, translation: wc.Translation, openid: str,
               handoff: dict[str, bool]) -> list[Reply] | None:
    """The pipeline for one push: its replies when the request still waits, else None after
    queueing them as customer-service messages."""
    assert translation.incoming is not None
    try:
        # The download runs inside the runner, so a slow one only delays the answer (it then
        # goes out as a customer-service message) and the push is still answered within 5 s.
        media_id = translation.media_id
        replies = await services.pipeline.handle(
            translation.incoming, prepare=(lambda inc: _keep_media(services, inc, media_id)) if media_id else None)
    except Exception:
        log.exception("wechat: the pipeline failed for %s", wc.who(openid))
        lang = await anyio.to_thread.run_sync(wc.language_of, services.engine, openid)
        replies = [Reply(say(lang, "error.generic"))]
    if handoff["waiting"]:
        return list(replies)
    await _enqueue_async(services, openid, list(replies), translation.lead_key)
    return None


def _keep_media(services: Any, incoming: Incoming, media_id: str) -> Incoming:
    sender = services.senders.get(wc.CHANNEL)
    return wc.keep_media(getattr(sender, "client", None), services.engine, incoming, media_id,
                         services.clock.now())


async def _enqueue_async(services: Any, openid: str, replies: list[Reply], lead_key: str | None) -> None:
    lang = await anyio.to_thread.run_sync(wc.language_of, services.engine, openid)
    lead = say(lang, lead_key) if lead_key else ""
    await anyio.to_thread.run_sync(_enqueue, services, openid, replies, lead)
    services.sender.wake()


def _release_held(services: Any, openid: str) -> None:
    with UnitOfWork(services.engine) as uow:
        if outbox.release_recipient(uow.session, wc.CHANNEL, openid, services.clock.now()):
            log.info("wechat: released held notices for %s", wc.who(openid))
        uow.commit()


def _enqueue(services: Any, openid: str, replies: list[Reply], lead: str) -> None:
    """The pipeline's replies as outbox rows, to go out as customer-service messages."""
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        ident = uow.session.scalars(
            select(t.Identity)
            .where(col(t.Identity.channel) == wc.CHANNEL, col(t.Identity.address) == openid)
        ).first()
        for index, reply in enumerate(replies):
            text = f"{lead}\n\n{reply.text}" if lead and index == 0 else reply.text
            outbox.enqueue(
                uow.session, channel=wc.CHANNEL, address=openid, text=text, now=now,
                buttons=[[b.to_json() for b in row] for row in reply.buttons],
                identity_id=ident.id if ident else None,
                resident_id=ident.resident_id if ident else None,
                topic="wechat.late_reply",
            )
        uow.commit()
