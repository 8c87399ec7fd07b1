"""The API side the loopback WeChat Official Account (tests/fakes/wechat.py) and WeCom
(tests/fakes/wecom.py) share, since the two platforms' APIs work alike (PROTOCOLS.md §2.1, §3.1):

- access tokens: each fetch issues a token that supersedes the previous one of its series, which
  keeps working TOKEN_GRACE seconds; a token expires TOKEN_LIFETIME after it was issued. A call
  without one is 41001, with an unknown one 40014, a superseded one 40001, an expired one 42001;
- injected faults: `inject` makes the next call (or the next to one path) answer an errcode,
  answer late, or fail as a broken server or network does (`FAULTS`);
- the endpoint around every API handler (`_api`): the injection, the fake's own refusal
  (`_refuse`), the token, the handler, and the call recorded in `api_calls`.

Each fake keeps its own token endpoint (the credentials differ) and its own errmsg (`_error`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import string
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from storage.clock import FixedClock, as_utc
from tests.fakes import wechat_crypto as crypto

T = TypeVar("T")

TOKEN_LIFETIME = 7200
# A superseded access_token keeps working this long (PROTOCOLS.md §2.1, access_token).
TOKEN_GRACE = 300

# What a broken server, proxy or network does to an API call instead of answering it
# (`inject(fault=...)`):
FAULTS = frozenset({
    "html_500",    # 500 with an HTML error page, as a proxy in front of the API sends
    "truncated",   # 200 application/json whose JSON is cut off
    "not_found",   # 404 with a text body that is not JSON
    "reset",       # headers and part of the body, then the connection is dropped
    "hang",        # no answer at all, until the client gives up (or `release_hung()`)
})
HANG_LIMIT = 60.0


def rid() -> str:
    """A request id like the one real errmsg values end with (it changes every call)."""
    return "-".join(secrets.token_hex(4) for _ in range(3))


@dataclass(frozen=True)
class ApiCall:
    method: str
    path: str
    query: Mapping[str, str]
    content_type: str | None
    body: bytes
    answer: Mapping[str, Any] | None


@dataclass
class Token:
    value: str
    series: str
    issued_at: float
    expires_at: float
    superseded_at: float | None = None


@dataclass(frozen=True)
class Injection:
    errcode: int | None
    delay: float
    path: str | None
    errmsg: str | None
    fault: str | None = None


class BadRequest(Exception):
    """Raised by a handler: the call is answered with this errcode."""

    def __init__(self, code: int, errmsg: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.errmsg = errmsg


class Call:
    """One API request as the handlers see it."""

    def __init__(self, request: Request, body: bytes) -> None:
        self.request = request
        self.body = body
        self.after: BackgroundTask | None = None

    @property
    def client_ip(self) -> str:
        return self.request.client.host if self.request.client else ""

    def json(self) -> dict[str, Any]:
        # wechatpy posts UTF-8 JSON with no Content-Type (PROTOCOLS.md §0, trap 9), so the
        # header is never consulted.
        if not self.body:
            raise BadRequest(44002)
        try:
            data = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(47001) from exc
        if not isinstance(data, dict):
            raise BadRequest(47001)
        return data


Handler = Callable[[Call], Any]


class FakeWeixinApi:
    """The shared API side; a fake serves `_api(handler)` endpoints and answers errors its way."""

    # How long `wait_for` waits unless told.
    wait_timeout = 5.0

    def __init__(self, clock: Any = None) -> None:
        # A storage.clock.FixedClock (or any object with now(), advance() and set()), so the
        # fake and the app under test can share one simulated time.
        self.clock = clock or FixedClock(dt.datetime.now(dt.UTC))
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._tokens: dict[str, Token] = {}
        self._current: dict[str, str] = {}
        self._injections: list[Injection] = []
        self._hung = threading.Event()
        self._api_calls: list[ApiCall] = []

    def _error(self, code: int, errmsg: str | None = None) -> dict[str, Any]:
        """The platform's error answer for `code` (its errmsg, or `errmsg`)."""
        raise NotImplementedError

    def _refuse(self, call: Call) -> dict[str, Any] | None:
        """An error answer for a call the platform refuses before its token is looked at."""
        return None

    # ----------------------------------------------------------------------- clock

    def now(self) -> int:
        """The fake's time as Unix seconds."""
        return int(as_utc(self.clock.now()).timestamp())

    def advance(self, delta: dt.timedelta | float) -> None:
        """Move the fake's clock forward (a float is seconds)."""
        self.clock.advance(delta if isinstance(delta, dt.timedelta) else dt.timedelta(seconds=delta))

    # ----------------------------------------------------------------------- observing

    @property
    def api_calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._api_calls)

    async def wait_for(self, condition: Callable[[], T], timeout: float | None = None) -> T:
        """Poll `condition` until it returns something truthy; fail after `timeout` seconds
        (`wait_timeout` unless told)."""
        timeout = self.wait_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"the condition did not hold within {timeout} s")
            await asyncio.sleep(0.01)

    # ----------------------------------------------------------------------- faults

    def inject(self, errcode: int | None = None, *, delay: float = 0.0, path: str | None = None,
               errmsg: str | None = None, fault: str | None = None) -> None:
        """Make the next API call (or the next to `path`, e.g. "message/custom/send") answer
        with `errcode` (-1 busy, 45009 quota, ...) and/or only after `delay` real seconds, or
        fail as `fault` says (one of FAULTS: an HTML 500 page, cut-off JSON, a 404 with a
        text body, a connection dropped mid-body, no answer). A faulted call does nothing."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault is one of {sorted(FAULTS)}, not {fault!r}")
        with self._lock:
            self._injections.append(Injection(errcode, delay, path, errmsg, fault))

    def release_hung(self) -> None:
        """Let calls held by the "hang" fault end (they answer nothing useful: a 504)."""
        self._hung.set()

    def _take_injection(self, path: str) -> Injection | None:
        with self._lock:
            for i, injection in enumerate(self._injections):
                if injection.path is None or injection.path.strip("/") == path:
                    return self._injections.pop(i)
        return None

    async def _fault(self, fault: str) -> Response:
        if fault == "html_500":
            page = b"<html><head><title>500 Internal Server Error</title></head><body>" \
                   b"<center><h1>500 Internal Server Error</h1></center><hr><center>nginx</center></body></html>"
            return Response(page, status_code=500, media_type="text/html")
        if fault == "truncated":
            return Response(b'{"errcode":0,"errmsg":"o', media_type="application/json")
        if fault == "not_found":
            return Response(b"404 page not found", status_code=404, media_type="text/plain")
        if fault == "reset":
            async def cut_off() -> AsyncIterator[bytes]:
                yield b'{"errcode":0,'
                await asyncio.sleep(0.05)
                raise ConnectionResetError("the fake drops the connection mid-body")
            return StreamingResponse(cut_off(), media_type="application/json")
        # hang: answer nothing until the client gives up and goes away
        deadline = time.monotonic() + HANG_LIMIT
        while not self._hung.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return Response(b"", status_code=504)

    # ----------------------------------------------------------------------- tokens

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (42001 on its next use)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, self.now())

    def _issue_token(self, series: str = "token") -> Token:
        now = self.now()
        previous = self._current.get(series)
        if previous is not None:
            self._tokens[previous].superseded_at = now
        # Real tokens run to ~150 characters, and WeChat asks for 512 of storage.
        value = crypto.random_text(160, string.ascii_letters + string.digits + "_-")
        token = Token(value, series, now, now + TOKEN_LIFETIME)
        self._tokens[value] = token
        self._current[series] = value
        return token

    def _check_access_token(self, value: str | None) -> int:
        if not value:
            return 41001
        token = self._tokens.get(value)
        if token is None:
            return 40014
        now = self.now()
        if token.superseded_at is not None and now >= token.superseded_at + TOKEN_GRACE:
            return 40001
        if now >= token.expires_at:
            return 42001
        return 0

    # ----------------------------------------------------------------------- endpoints

    def _record(self, request: Request, path: str, body: bytes, answer: Mapping[str, Any] | None) -> None:
        with self._changed:
            self._api_calls.append(ApiCall(request.method, path, dict(request.query_params),
                                           request.headers.get("content-type"), body, answer))
            self._changed.notify_all()

    def _api(self, handler: Handler, *, auth: bool = True) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint serving `handler` (which answers a dict for JSON, or a Response, or
        raises BadRequest); `auth=False` for the token endpoints."""
        async def endpoint(request: Request) -> Response:
            path = request.url.path.removeprefix("/cgi-bin/")
            body = await request.body()
            injection = self._take_injection(path)
            if injection and injection.delay:
                await asyncio.sleep(injection.delay)
            if injection and injection.fault:
                self._record(request, path, body, {"fault": injection.fault})
                return await self._fault(injection.fault)
            task: BackgroundTask | None = None
            answer: Any
            if injection and injection.errcode is not None:
                answer = self._error(injection.errcode, injection.errmsg)
            else:
                call = Call(request, body)
                with self._lock:
                    answer = self._refuse(call)
                    code = self._check_access_token(request.query_params.get("access_token")) if auth else 0
                    if answer is None and code:
                        answer = self._error(code)
                    elif answer is None:
                        try:
                            answer = handler(call)
                        except BadRequest as exc:
                            answer = self._error(exc.code, exc.errmsg)
                task = call.after
            media = answer if isinstance(answer, Response) else None
            self._record(request, path, body, None if media is not None else answer)
            if media is not None:
                return media
            return JSONResponse(answer, background=task)

        return endpoint
