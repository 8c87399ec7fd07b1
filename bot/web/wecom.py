"""`/wecom`: the WeCom (企业微信) app's callback URL (接收消息服务器配置).

GET is the URL check: msg_signature over the *encrypted* echostr, which is decrypted and returned
as is (no quotes, BOM or newline) within WeCom's 1 s. FastAPI decodes the query once, so the
`+ / =` of the echostr survive.

POST is a push, always encrypted:
1. msg_signature checked in constant time and the timestamp within WECHAT_FRESHNESS_SECONDS of
   the app's clock → 403 otherwise; the body capped, decrypted for this CorpID and parsed
   without DTDs → 4xx; a push for another CorpID or app → 400;
2. the (timestamp, nonce) pair claimed in WeCom's own replay memory (the OA's `PushNonces` under
   the channel "wecom", so a pair the Official Account saw says nothing here): a pair already used
   by another message → 403;
3. dedupe on MsgId (events: the member, CreateTime and what was pressed): WeCom's retries answer
   200 and do nothing twice;
4. 200 with an empty body at once; the pipeline runs as a task and its replies go out through
   the outbox as app messages. A card press runs the button's action through the same handlers
   as the chat and redraws the card with its `response_code` (a step that asks for a text redraws
   it once the text has come).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from bot.channels import wechat as wc
from bot.channels import wecom as wm
from bot.channels.base import Reply
from bot.web.deps import Services
from handlers.replies import DEFAULT, say
from storage import outbox
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
router = APIRouter()
_tasks: set[asyncio.Task[Any]] = set()


def _crypto(services: Any) -> wm.CallbackCrypto:
    settings = services.settings
    if not (settings.wecom_token and settings.wecom_encoding_aes_key and settings.wecom_corp_id):
        raise HTTPException(status_code=404, detail="the WeCom channel is not configured")
    return wm.CallbackCrypto(settings.wecom_token, settings.wecom_corp_id, settings.wecom_encoding_aes_key)


@router.get("/wecom", include_in_schema=False)
def verify_url(services: Services, msg_signature: str = "", timestamp: str = "", nonce: str = "",
               echostr: str = "") -> Response:
    crypto = _crypto(services)
    try:
        wc.check_fresh(timestamp, nonce, services.clock.now(), services.settings.wechat_freshness_seconds)
        plain = crypto.verify_url(msg_signature, timestamp, nonce, echostr)
    except wc.Rejected as exc:
        log.warning("wecom URL check refused (%s): %s", exc.status, exc.reason)
        return Response(status_code=exc.status)
    return PlainTextResponse(plain)


@router.post("/wecom", include_in_schema=False)
async def receive(request: Request, services: Services, msg_signature: str = "", timestamp: str = "",
                  nonce: str = "") -> Response:
    crypto = _crypto(services)
    settings = services.settings
    try:
        wc.check_fresh(timestamp, nonce, services.clock.now(), settings.wechat_freshness_seconds)
        outer = wc.parse_xml(await request.body())  # capped by bot/web/guard.py
        if not outer.get("Encrypt"):
            raise wc.Rejected(400, "no Encrypt element")
        fields = wc.parse_xml(crypto.decrypt(outer["Encrypt"], msg_signature, timestamp, nonce))
        if fields.get("ToUserName") != settings.wecom_corp_id:
            raise wc.Rejected(400, "the push is for another CorpID")
        agent = fields.get("AgentID", "")
        if agent and settings.wecom_agent_id is not None and agent != str(settings.wecom_agent_id):
            raise wc.Rejected(400, "the push is for another app")
        if not fields.get("FromUserName") or not fields.get("MsgType"):
            raise wc.Rejected(400, "FromUserName or MsgType is missing")
    except wc.Rejected as exc:
        log.warning("wecom push refused (%s): %s", exc.status, exc.reason)
        return Response(status_code=exc.status)

    key = wm.dedupe_key(fields)
    claimed = await anyio.to_thread.run_sync(
        _nonces(request, services).claim, timestamp, nonce, key, services.clock.now())
    if not claimed:
        log.warning("wecom push refused (403): its timestamp and nonce were used by another push")
        return Response(status_code=403)
    if not services.state.first_time(f"wecom:{key}", wm.DEDUPE_TTL):
        return Response(status_code=200)  # WeCom's retry of a push already taken
    task = asyncio.create_task(_handle(services, fields))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return Response(status_code=200)


def _nonces(request: Request, services: Any) -> wc.PushNonces:
    nonces: wc.PushNonces | None = getattr(request.app.state, "wecom_nonces", None)
    if nonces is None:
        nonces = request.app.state.wecom_nonces = wc.PushNonces(
            state=services.state, engine=services.engine, shared_state=bool(services.settings.redis_url),
            window=services.settings.wechat_freshness_seconds, channel=wm.CHANNEL)
    return nonces


async def _handle(services: Any, fields: dict[str, str]) -> None:
    userid = wm.normal_userid(fields["FromUserName"])
    try:
        await _serve(services, userid, fields)
    except Exception:
        log.exception("wecom: the push of %s failed", wm.who(userid))
        await anyio.to_thread.run_sync(_enqueue_text, services, userid, say(DEFAULT, "error.generic"))
    services.sender.wake()


async def _serve(services: Any, userid: str, fields: dict[str, str]) -> None:
    state = services.state
    translation = wm.translate(fields, number_action=lambda text: wm.number_action(state, userid, text))
    if translation.incoming is None and translation.text_key is None:
        return
    # A member given a WeCom id since start-up (registry reload, `griddesk wecom sync`).
    await anyio.to_thread.run_sync(wm.bind_members, services.engine, services.clock.now(), [userid])
    lang = await anyio.to_thread.run_sync(_staff_language, services, userid)
    if lang is None:
        # The app is for staff: a member who is nobody in the registry is not served as a resident.
        log.info("wecom: %s is no staff member in the registry", wm.who(userid))
        await anyio.to_thread.run_sync(_enqueue_text, services, userid, say(DEFAULT, "error.not_for_you"))
        return
    if translation.incoming is None:
        assert translation.text_key is not None
        await anyio.to_thread.run_sync(_enqueue_text, services, userid, say(lang, translation.text_key))
        return

    replies = await services.pipeline.handle(
        translation.incoming, deliver=lambda session, replies, now: _deliver(session, userid, replies, now))
    asks = any(reply.expects_text for reply in replies)
    press = translation.press
    if press is not None:
        step, _, rest = press.key.partition(":")
        if step not in wm.CASE_STEPS or not press.response_code:
            return
        case_ref = rest.split(":", 1)[0]
        if asks:
            # The step waits for a text; the card is redrawn when it has come.
            state.put(_card_key(userid), {"case": case_ref, "task_id": press.task_id,
                                          "response_code": press.response_code}, ttl=wm.CARD_TTL)
            return
        await anyio.to_thread.run_sync(_redraw, services, userid, case_ref, press.task_id, press.response_code)
        return
    if not asks:
        waiting = state.pop(_card_key(userid))
        if waiting:
            await anyio.to_thread.run_sync(_redraw, services, userid, str(waiting["case"]),
                                           str(waiting["task_id"]), str(waiting["response_code"]))


def _card_key(userid: str) -> str:
    return f"wecom:card:{userid}"


def _redraw(services: Any, userid: str, case_ref: str, task_id: str, response_code: str) -> None:
    sender = services.senders.get(wm.CHANNEL)
    if not isinstance(sender, wm.WeComSender):
        return
    drawn = wm.card_for_case(services.engine, case_ref, userid, task_id)
    if drawn is None:
        return
    template_card, state_name = drawn
    sender.update_card(userid, response_code, template_card, replace_name="" if template_card else state_name)


def _staff_language(services: Any, userid: str) -> str | None:
    from storage import tables as t

    with UnitOfWork(services.engine) as uow:
        ident = wm.identity_of(uow.session, userid)
        person = uow.session.get(t.Person, ident.person_id) if ident and ident.person_id else None
        if person is None or not person.active:
            return None
        return (ident.language if ident else None) or person.language or DEFAULT


def _deliver(session: Session, userid: str, replies: list[Reply], now: dt.datetime) -> None:
    """The pipeline's replies as outbox rows, in its own transaction."""
    ident = wm.identity_of(session, userid)
    for reply in replies:
        outbox.enqueue(session, channel=wm.CHANNEL, address=userid, text=reply.text, now=now,
                       buttons=[[b.to_json() for b in row] for row in reply.buttons],
                       identity_id=ident.id if ident else None, person_id=ident.person_id if ident else None,
                       topic="wecom.reply")


def _enqueue_text(services: Any, userid: str, text: str) -> None:
    with UnitOfWork(services.engine) as uow:
        _deliver(uow.session, userid, [Reply(text)], services.clock.now())
        uow.commit()
