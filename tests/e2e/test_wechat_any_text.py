"""Any text a resident can put in a message or an event key goes through `/wechat` without a
server error and leaves nothing half-stored, on SQLite and PostgreSQL. Pushes are built with
wechatpy (tests/e2e/test_wechat_push_security.py), in safe mode."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.e2e.test_wechat_push_security import GH, App, bind, start, text  # noqa: F401 (start is a fixture)
from tests.fakes.wechat import new_openid

# Lone surrogates cannot be encoded, so WeChat cannot send them; NUL is not XML. Everything else
# may come: control characters, RTL marks, combining marks, emoji, very long strings.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=300)
TEXTS = st.one_of(ANY_TEXT, st.text(st.sampled_from("\u202e\u200f\u0301\u0300👍🏽👨‍👩‍👧 楼道灯坏了\r\n\t\x01\x1f]]>&<"),
                                    max_size=3000))


def half_done(app: App) -> list[str]:
    """Cases without their first event or without the notices they caused are half-stored."""
    with UnitOfWork(app.services.engine) as uow:
        cases = uow.session.scalar(select(func.count()).select_from(t.Case)) or 0
        with_events = uow.session.scalar(select(func.count(func.distinct(t.CaseEvent.case_id)))) or 0
        with_notices = uow.session.scalar(select(func.count(func.distinct(t.Outbox.case_id)))
                                          .where(t.Outbox.case_id.is_not(None))) or 0  # type: ignore[union-attr]
    problems = []
    if with_events != cases:
        problems.append(f"{cases} cases, {with_events} with events")
    if with_notices > cases:
        problems.append(f"notices for {with_notices} cases, {cases} cases")
    return problems


@pytest.mark.slow  # 30 examples × 3 pushes through the whole pipeline, per database
def test_any_content_and_event_key_is_answered_and_stored_whole(start: Any, database_url: str) -> None:  # noqa: F811
    app: App = start(database_url)
    resident = new_openid()
    bind(app, resident)
    seconds = itertools.count(1)

    def push(fields: dict[str, Any]) -> int:
        query, body = app.pusher.request(fields, mode="safe", timestamp=app.now)
        return app.pusher.post(query, body).status_code

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(content=TEXTS, key=TEXTS)
    @example(content="👍" * 10_000, key="qrscene_b_" + "\u202e" * 40)
    @example(content="楼道灯坏了" + "\u0301" * 2000, key="b_ZN-B03\u200f")
    def check(content: str, key: str) -> None:
        statuses = [
            push(text(resident, content, app.now + next(seconds))),
            push({"ToUserName": GH, "FromUserName": resident, "CreateTime": app.now + next(seconds),
                  "MsgType": "event", "Event": "CLICK", "EventKey": key}),
            push({"ToUserName": GH, "FromUserName": resident, "CreateTime": app.now + next(seconds),
                  "MsgType": "event", "Event": "SCAN", "EventKey": key, "Ticket": "gQ1"}),
        ]
        assert all(status < 500 for status in statuses), statuses
        assert half_done(app) == []

    check()
