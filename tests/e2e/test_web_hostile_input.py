"""Hostile input at every text entry of the web app, over real HTTP on SQLite and PostgreSQL.

Whatever string arrives — lone surrogates (escaped or as raw bytes), NUL, right-to-left marks,
piles of combining marks, ten thousand emoji, ids past 64 bits — the answer is a clear 4xx or a
polite reply, never a 5xx; a refused request stores nothing, an accepted one stores its whole
turn; and nothing is logged as an error.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.app import build_app, build_services
from bot.settings import Settings
from bot.web.auth import COOKIE, sign
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.conftest import ENV_PREFIXES, MONDAY_10AM, _sqlite_template, postgres_url, reset_postgres
from tests.e2e.conftest import Running
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp
from tests.fakes.telegram_bot_api import FakeTelegram

# Pieces that broke, or could break, a layer between the socket and the database.
HOSTILE = [
    "\ud800", "\udfff", "\udbff\udc00\udc00", "\x00", "a\x00b", "\u202e", "\u200f\u200e", "\u2066",
    "e" + "\u0301" * 50, "\ufffd", "\ufeff", "\r\n", "\t", "😀" * 10_000, "灯坏了", "/status ",
    "/status 99999999999999999999", "sts:", "rate:", "99999999999999999999999", "18446744073709551616",
    "9223372036854775807", "2147483648", "-1", "²", "１２", ":", "|", "ZN-20261123-0001", "%00", "\\u0000",
]
hostile_text = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(HOSTILE)), max_size=4).map("".join)
# A case action with a hostile reference: the buttons' prefixes, then anything.
hostile_action = st.tuples(st.sampled_from(["sts:", "rate:", "case:", "ack:", "add:", "trf:", "", "x"]),
                           hostile_text).map("".join)

BOUNDED = settings(max_examples=20, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def counts(services: Any) -> dict[str, int]:
    with UnitOfWork(services.engine) as uow:
        return {table.__name__: int(uow.session.scalar(select(func.count()).select_from(table)) or 0)
                for table in (t.ChatLine, t.Case, t.Outbox, t.Resident, t.Identity, t.Inbound)}


def post_json(client: httpx.Client, path: str, body: dict[str, Any], raw: bool) -> httpx.Response:
    """POST `body` as JSON: escaped (\\ud800) or, with `raw`, as the raw UTF-8 bytes of every
    character, lone surrogates included (ED A0 80)."""
    if raw:
        content = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    else:
        content = json.dumps(body).encode("ascii")
    return client.post(path, content=content, headers={"content-type": "application/json"})


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


TG_TOKEN = "123456:HOSTILE"
TG_SECRET = "hostile-Secret_1"
TG_USER = 7007


@pytest.fixture(scope="module")
def telegram_api() -> Iterator[FakeTelegram]:
    with FakeTelegram(tokens=[TG_TOKEN], time_scale=0.01) as fake:
        fake.user(TG_USER, "王秀英")
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        telegram_api: FakeTelegram) -> Iterator[Running]:
    """One app per database for the whole module (the tests compare counts before and after,
    so they share it): the web chat, and the Telegram webhook with its secret."""
    with pytest.MonkeyPatch.context() as env:
        # Module-scoped, so before the per-test clean_environ: the same cleaning here.
        for key in list(os.environ):
            if key.upper().startswith(ENV_PREFIXES):
                env.delenv(key)
        yield from _serve(request.param, tmp_path_factory, telegram_api)


def _serve(kind: str, tmp_path_factory: pytest.TempPathFactory, telegram_api: FakeTelegram) -> Iterator[Running]:
    if kind == "sqlite":
        path = tmp_path_factory.mktemp("hostile") / "griddesk.db"
        shutil.copy(_sqlite_template(tmp_path_factory), path)
        database_url = f"sqlite:///{path}"
    else:
        database_url = postgres_url()
        reset_postgres(database_url)
    settings = Settings(database_url=database_url, secret_key="e2e-secret", demo=True, send_idle_seconds=0.05,
                        telegram_bot_token=TG_TOKEN, telegram_api_base=telegram_api.url,
                        telegram_webhook_url="http://127.0.0.1:9/telegram/webhook",
                        telegram_webhook_secret=TG_SECRET, telegram_per_chat_per_second=1000,
                        telegram_global_per_second=1000)
    services = build_services(settings, clock=FixedClock(MONDAY_10AM), classifier=KeywordClassifier())
    served = ServedApp(build_app(services))
    hook = services.settings.telegram_webhook_url = f"{served.url}/telegram/webhook"
    served.start()
    running = Running(served.url, services)
    try:
        telegram_api.wait_for_sync(lambda: telegram_api.webhook_info()["url"] == hook)
        yield running
    finally:
        for client in running.clients:
            client.close()
        served.stop()
        services.engine.dispose()


@pytest.fixture(scope="module")
def resident(web: Running) -> httpx.Client:
    client = web.client()
    client.post("/api/demo/persona", json={"who": "building:ZN-B01"}).raise_for_status()
    client.post("/api/chat/send", json={"text": "楼道灯坏了三天了"}).raise_for_status()  # a case to refer to
    return client


@BOUNDED
@given(field=st.sampled_from(["text", "label", "action"]), value=hostile_text, raw=st.booleans())
def test_chat_send_answers_any_text_clearly_and_keeps_whole_turns(
        web: Running, resident: httpx.Client, caplog: pytest.LogCaptureFixture,
        field: str, value: str, raw: bool) -> None:
    body = {"text": {"text": value}, "label": {"action": "sts:1", "label": value},
            "action": {"action": value}}[field]
    before = counts(web.services)
    answer = post_json(resident, "/api/chat/send", body, raw)
    after = counts(web.services)
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 200:
        assert answer.json()["replies"]
        # One turn: what was said and at least one reply, together.
        assert after["ChatLine"] - before["ChatLine"] >= 2
    else:
        assert after == before
        assert answer.json()["detail"]
    assert resident.get("/api/chat/history").status_code == 200
    no_errors_logged(caplog)


@BOUNDED
@given(action=hostile_action, raw=st.booleans())
def test_case_buttons_with_any_reference_answer_politely(
        web: Running, resident: httpx.Client, caplog: pytest.LogCaptureFixture, action: str, raw: bool) -> None:
    answer = post_json(resident, "/api/chat/send", {"action": action}, raw)
    assert answer.status_code in (200, 422), answer.text
    no_errors_logged(caplog)


@pytest.mark.parametrize("said", ["/status 99999999999999999999", "/status 18446744073709551616", "/status ²"])
@pytest.mark.parametrize("kind", ["text", "action"])
def test_case_references_past_64_bits_are_simply_not_found(
        web: Running, resident: httpx.Client, caplog: pytest.LogCaptureFixture, said: str, kind: str) -> None:
    ref = said.removeprefix("/status ")
    bodies = {"text": [{"text": said}], "action": [{"action": f"sts:{ref}"}, {"action": f"rate:{ref}:s"}]}
    for body in bodies[kind]:
        answer = resident.post("/api/chat/send", json=body)
        assert answer.status_code == 200
        # In the language the resident last wrote in.
        assert any(w in answer.json()["replies"][0]["text"] for w in ("没有找到", "沒有找到", "Nothing found"))
    no_errors_logged(caplog)


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", "灯\x00坏了"])
@pytest.mark.parametrize("field", ["text", "label", "action"])
def test_a_lone_surrogate_or_nul_is_refused_by_name_and_kept_nowhere(
        web: Running, resident: httpx.Client, field: str, value: str) -> None:
    body = {"text": {"text": value}, "label": {"action": "sts:1", "label": value},
            "action": {"action": value}}[field]
    before = counts(web.services)
    for raw in (False, True):
        answer = post_json(resident, "/api/chat/send", body, raw)
        assert answer.status_code == 422
        assert field in json.dumps(answer.json()["detail"])
        assert "NUL" in answer.text or "surrogate" in answer.text
    assert counts(web.services) == before


@BOUNDED
@given(kind=st.sampled_from(["person:", "resident:", "building:", ""]), ref=hostile_text, raw=st.booleans())
def test_persona_pick_answers_any_who_clearly(web: Running, caplog: pytest.LogCaptureFixture,
                                              kind: str, ref: str, raw: bool) -> None:
    before = counts(web.services)
    with httpx.Client(base_url=web.url, timeout=10) as anonymous:
        answer = post_json(anonymous, "/api/demo/persona", {"who": kind + ref}, raw)
    assert answer.status_code in (200, 404, 422), answer.text
    if answer.status_code != 200:
        assert counts(web.services) == before
    no_errors_logged(caplog)


# Ids are 32-bit INTEGER columns on PostgreSQL: 2^31 is the first number no row can have.
PAST_IDS = "2147483648"


@pytest.mark.parametrize("text", [f"/status {PAST_IDS}", f"/cosign {PAST_IDS}", f"/withdraw {PAST_IDS}",
                                  f"/status ²{PAST_IDS}"])
def test_an_id_past_the_id_columns_is_not_found(resident: httpx.Client, text: str) -> None:
    answer = resident.post("/api/chat/send", json={"text": text})
    assert answer.status_code == 200, answer.text
    assert PAST_IDS in answer.json()["replies"][0]["text"]  # "没有找到 2147483648。请检查编号。"


def test_an_id_past_the_id_columns_is_refused_before_the_database(web: Running, resident: httpx.Client) -> None:
    assert resident.get("/api/chat/inbox", params={"after": PAST_IDS}).status_code == 422
    with httpx.Client(base_url=web.url, timeout=10) as anonymous:
        assert anonymous.post("/api/demo/persona", json={"who": f"resident:{PAST_IDS}"}).status_code == 404


@pytest.fixture(scope="module")
def visitor(web: Running) -> httpx.Client:
    """A client without a session, for requests that must not sign anyone in."""
    return web.client(follow_redirects=False)


def _header_safe(value: str) -> str:
    # HTTP itself cannot carry control characters in a header, nor end one with a space;
    # everything else goes as raw UTF-8 bytes.
    return "".join(ch for ch in value if ord(ch) >= 0x20 and ch != "\x7f").rstrip(" ")


genuine = sign("e2e-secret", "person:xu_ting")
hostile_token = st.one_of(
    hostile_text,
    st.tuples(hostile_text, hostile_text, hostile_text).map("|".join),
    # A genuine token whose signature, expiry or address was replaced.
    hostile_text.map(lambda sig: genuine.rsplit("|", 1)[0] + "|" + sig),
    hostile_text.map(lambda exp: "person:xu_ting|" + exp + "|" + genuine.rsplit("|", 1)[1]),
    hostile_text.map(lambda who: who + "|" + genuine.split("|", 1)[1]),
)


@BOUNDED
@given(where=st.sampled_from(["cookie", "login", "photos"]), token=hostile_token)
def test_signed_tokens_of_any_shape_are_refused_without_a_5xx(
        visitor: httpx.Client, caplog: pytest.LogCaptureFixture, where: str, token: str) -> None:
    client = visitor
    token = token[:1000]  # a URL or a header has a size limit of its own (a 10,000-emoji token has no place)
    if where == "cookie":
        cookie = f"{COOKIE}={_header_safe(token)}".encode("utf-8", "surrogatepass")
        assert client.get("/api/session", headers={"cookie": cookie}).status_code == 401
    else:
        path = quote(token.encode("utf-8", "surrogatepass"), safe="")
        prefix = "/login/" if where == "login" else "/photos/"
        # Never a sign-in (303) nor a photo; 307 redirects a token ending in "/" without it, and
        # a token holding "/" may name the page of one photo by a non-number (422).
        assert client.get(prefix + path).status_code in ((307, 403, 404, 422) if where == "login"
                                                         else (307, 404, 422))
        if where == "photos":
            assert client.get(f"/photos/{path}/1").status_code in (307, 404, 422)
    no_errors_logged(caplog)


@pytest.mark.parametrize("signature", ["é", "签名", "\u202e", "AAAA\u0301"])
def test_a_non_ascii_signature_is_refused_like_any_forgery(visitor: httpx.Client, signature: str) -> None:
    forged = genuine.rsplit("|", 1)[0] + "|" + signature
    client = visitor
    cookie = f"{COOKIE}={forged}".encode()
    assert client.get("/api/session", headers={"cookie": cookie}).status_code == 401
    assert client.get("/login/" + quote(forged, safe="")).status_code == 403
    assert client.get("/photos/" + quote(forged, safe="")).status_code == 404


# --------------------------------------------------------------------------- Telegram


@pytest.fixture(scope="module")
def telegram_resident(web: Running, telegram_api: FakeTelegram) -> int:
    """A Telegram user bound to a building through the webhook, so case commands apply."""
    telegram_api.start_bot(TG_USER, "b_ZN-B01")
    wait_until(lambda: counts(web.services)["Inbound"] >= 1 and _states(web.services) == {"done"})
    return TG_USER


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.02)


def _states(services: Any) -> set[str]:
    with UnitOfWork(services.engine) as uow:
        return set(uow.session.scalars(select(t.Inbound.state)).all())


_UPDATE_IDS = iter(range(900_000, 10**9))


def _update(kind: str, value: str) -> dict[str, Any]:
    update_id = next(_UPDATE_IDS)
    user = {"id": TG_USER, "is_bot": False, "first_name": "王秀英", "language_code": "zh-hans"}
    chat = {"id": TG_USER, "type": "private", "first_name": "王秀英"}
    message = {"message_id": update_id, "date": 1_795_000_000, "chat": chat, "from": user}
    if kind == "text":
        return {"update_id": update_id, "message": {**message, "text": value}}
    return {"update_id": update_id, "callback_query": {
        "id": str(update_id), "from": user, "chat_instance": "1", "data": value,
        "message": {**message, "from": {"id": 123456, "is_bot": True, "first_name": "griddesk"},
                    "text": "…"}}}


@BOUNDED
@given(kind=st.sampled_from(["text", "callback"]), value=st.one_of(hostile_text, hostile_action),
       raw=st.booleans())
def test_telegram_updates_with_any_text_or_callback_data_are_kept_and_answered(
        web: Running, telegram_resident: int, caplog: pytest.LogCaptureFixture, kind: str, value: str,
        raw: bool) -> None:
    client = web.client(headers={"x-telegram-bot-api-secret-token": TG_SECRET})
    update = _update(kind, value)
    answer = post_json(client, "/telegram/webhook", update, raw)
    assert answer.status_code == 200, answer.text
    services = web.services
    # Stored, then handled to the end: never left failed (which would be a traceback).
    wait_until(lambda: _states(services) <= {"done", "failed"})
    assert _states(services) == {"done"}
    no_errors_logged(caplog)
