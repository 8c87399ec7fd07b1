"""Schemathesis over the app's own /openapi.json, against the real server on loopback, signed in as
a resident and as the director: no request it generates gets a 5xx, and every status answered
is one the schema documents (FastAPI `responses=`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from bot.app import build_app, build_services
from bot.settings import Settings
from bot.web.auth import COOKIE
from storage.clock import FixedClock
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp

EXAMPLES_PER_OPERATION = 12
# Each route and the error answers it must document.
DOCUMENTED = {
    ("POST", "/api/chat/send"): {401, 413, 422, 503},
    ("POST", "/api/chat/photo"): {401, 413, 422, 503},
    ("POST", "/api/chat/location"): {401, 413, 422, 503},
    ("POST", "/api/demo/persona"): {404, 413, 422},
    ("GET", "/api/chat/inbox"): {401, 422},
    ("GET", "/api/chat/history"): {401, 422},
    ("GET", "/api/session"): {401},
    ("GET", "/api/figures"): {401, 403, 422},
    ("GET", "/api/cases/{number}/attachments"): {401, 404},
    ("GET", "/media/{media_id}"): {401, 404, 422},
    ("GET", "/photos/{token}"): {404},
    ("GET", "/photos/{token}/{media_id}"): {404, 422},
}


@pytest.fixture
def served(sqlite_url: str, clock: FixedClock) -> Iterator[tuple[str, dict[str, str]]]:
    """The app, and a session cookie for each of a resident and the director."""
    services = build_services(Settings(database_url=sqlite_url, secret_key="e2e-secret", demo=True,
                                       send_idle_seconds=0.05), clock=clock, classifier=KeywordClassifier())
    with ServedApp(build_app(services)) as server:
        cookies = {}
        for name, who in (("resident", "building:ZN-B01"), ("director", "person:lin_hui")):
            with httpx.Client(base_url=server.url) as client:
                client.post("/api/demo/persona", json={"who": who}).raise_for_status()
                cookies[name] = client.cookies[COOKIE]
        yield server.url, cookies
    services.engine.dispose()


def test_the_schema_documents_each_routes_error_answers(served: tuple[str, dict[str, str]]) -> None:
    url, _ = served
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    for (method, path), codes in DOCUMENTED.items():
        documented = {int(code) for code in paths[path][method.lower()]["responses"] if code.isdigit()}
        assert codes <= documented, (method, path)


def test_no_generated_request_gets_a_5xx_or_an_undocumented_status(served: tuple[str, dict[str, str]]) -> None:
    url, cookies = served
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    made = []
    failures = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def run(case: schemathesis.Case) -> None:
                for who, cookie in cookies.items():
                    made.append(who)
                    try:
                        case.call_and_validate(base_url=url, session=session, cookies={COOKIE: cookie},
                                               checks=[not_a_server_error, status_code_conformance])
                    except Exception as exc:
                        failures.append(f"{who} {case.method} {case.formatted_path}: {exc}"[:500])
                        raise

            # Hypothesis re-raises the shrunk failure, already collected: go on to the next route.
            with contextlib.suppress(Exception):
                run()
    print(f"schemathesis: {len(made)} requests, {len(failures)} failures")
    assert failures == []
    assert len(made) >= 100
