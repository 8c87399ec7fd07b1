"""The Rasa backend against a loopback server answering Rasa's /model/parse JSON, and failing
as a real one does: down, an HTML 500, a cut answer, a hang, JSON that is not a parse, 401."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import nlu
from nlu import NLUUnavailable, RasaClassifier
from nlu.rasa_http import WARM_UP_TEXT
from tests.fakes.rasa import FakeRasa, refused_url
from tests.unit.test_nlu_cli import LABELLED, run


@pytest.fixture(scope="module")
def embedded() -> nlu.Classifier:
    return nlu.load()


@pytest.fixture
def rasa() -> Iterator[tuple[FakeRasa, str]]:
    fake = FakeRasa()
    with fake.serving() as url:
        yield fake, url


def test_rasa_intent_gives_the_kind_and_entities_give_category_and_urgency(
        rasa: tuple[FakeRasa, str], embedded: nlu.Classifier) -> None:
    fake, url = rasa
    with RasaClassifier(url, embedded=embedded) as clf:
        parsed = clf.parse("3栋2单元301门口的灯坏了，还有煤气味")
    assert fake.texts == ["3栋2单元301门口的灯坏了，还有煤气味"]
    assert (parsed.kind, parsed.intent) == ("service_request", None)
    assert parsed.confidence["kind"] == pytest.approx(0.93)
    assert parsed.alternative_kind is None  # the embedded model agrees
    assert (parsed.category, parsed.confidence["category"]) == ("facilities", pytest.approx(0.88))
    assert parsed.urgent is True
    assert parsed.entity("room") == "301"
    # The embedded extractor adds what Rasa did not find.
    assert parsed.entity("building") == "3" and parsed.entity("unit") == "2"
    assert parsed.lang == "zh-Hans"
    assert clf.status() == {"url": url, "answering": True, "fallbacks": 0, "last_failure": None}


def test_small_talk_intent_becomes_kind_other(rasa: tuple[FakeRasa, str],
                                              embedded: nlu.Classifier) -> None:
    _, url = rasa
    with RasaClassifier(url, embedded=embedded) as clf:
        parsed = clf.parse("hello there")
    assert (parsed.kind, parsed.intent, parsed.lang) == ("other", "greet", "en")


def test_a_category_of_the_servers_own_taxonomy_is_kept(rasa: tuple[FakeRasa, str],
                                                        embedded: nlu.Classifier) -> None:
    _, url = rasa
    with RasaClassifier(url, embedded=embedded) as clf:
        assert clf.parse("井盖不见了").category == "municipal_manhole_covers"


def test_when_the_embedded_model_reads_another_kind_the_reading_is_unsure(
        rasa: tuple[FakeRasa, str], embedded: nlu.Classifier) -> None:
    """A saturated Rasa says "thanks" at 0.93 to a request that opens with thanks; the embedded
    model reads a service request, so the kind confidence falls below CLARIFY_BELOW."""
    _, url = rasa
    text = "谢谢，但是楼道灯坏了三天了请派人修"
    second = embedded.parse(text)
    assert second.kind == "service_request"
    with RasaClassifier(url, embedded=embedded) as clf:
        parsed = clf.parse(text)
    assert (parsed.kind, parsed.intent) == ("other", "thanks")
    assert parsed.alternative_kind == "service_request"
    p = second.confidence["kind"]
    assert parsed.confidence["kind"] == pytest.approx(min(p, 1 - p), abs=1e-4)
    assert parsed.confidence["kind"] <= 0.5 < nlu.CLARIFY_BELOW
    assert parsed.to_json()["alternative_kind"] == "service_request"


def test_fallback_intent_is_out_of_scope_and_heads_come_from_the_embedded_model(
        rasa: tuple[FakeRasa, str], embedded: nlu.Classifier) -> None:
    _, url = rasa
    text = "社保卡丢了去哪里补办"
    with RasaClassifier(url, embedded=embedded) as clf:
        parsed = clf.parse(text)
    assert (parsed.kind, parsed.intent) == ("other", "out_of_scope")
    assert parsed.alternative_kind == "service_request"
    assert parsed.confidence["kind"] < 0.3  # Rasa's 0.3, lowered by the disagreement
    assert parsed.category == embedded.parse(text).category == "social_security"
    assert parsed.urgent is False


def test_token_is_sent_as_rasa_expects(embedded: nlu.Classifier) -> None:
    fake = FakeRasa(token="s3cret")
    with fake.serving() as url, RasaClassifier(url, token="s3cret", embedded=embedded) as clf:
        parsed = clf.parse("谢谢")
    assert fake.tokens == ["s3cret"]
    assert clf.fallbacks == 0 and parsed.confidence["kind"] == pytest.approx(0.93)


FAULTS = [
    ("html_500", "answered HTTP 500"),
    ("truncated", "not JSON"),
    ("not_a_parse", "JSON that is not a Rasa parse"),
    ("unauthorized", "answered HTTP 401: the token is missing or wrong"),
]


@pytest.mark.parametrize(("fault", "reason"), FAULTS)
def test_a_failing_server_leaves_the_message_to_the_embedded_model(
        rasa: tuple[FakeRasa, str], embedded: nlu.Classifier, caplog: pytest.LogCaptureFixture,
        fault: str, reason: str) -> None:
    fake, url = rasa
    fake.fault = fault  # type: ignore[assignment]
    text = "楼道灯坏了，麻烦派人来修，我的电话13812345678"
    with RasaClassifier(url, token="s3cret", embedded=embedded) as clf:
        with pytest.raises(NLUUnavailable, match=reason):
            clf.parse_with_rasa(text)
        with caplog.at_level(logging.WARNING, logger="nlu.rasa_http"):
            parsed = clf.parse(text)
    assert fake.texts == [text, text]  # Rasa was asked
    assert parsed == embedded.parse(text)
    assert clf.status()["answering"] is False and clf.fallbacks == 1
    [record] = [r for r in caplog.records if r.name == "nlu.rasa_http"]
    assert record.levelno == logging.WARNING
    logged = record.getMessage()
    assert reason in logged and "embedded model reads the messages" in logged
    # Neither the message, its phone number, nor the token reach the log.
    for secret in ("楼道", "13812345678", "s3cret"):
        assert secret not in logged


def test_a_server_that_is_down_leaves_the_message_to_the_embedded_model(
        embedded: nlu.Classifier, caplog: pytest.LogCaptureFixture) -> None:
    with RasaClassifier(refused_url(), timeout=1.0, embedded=embedded) as clf:
        with pytest.raises(NLUUnavailable, match="could not be reached") as info:
            clf.parse_with_rasa("你好")
        assert isinstance(info.value, nlu.NLUError)
        with caplog.at_level(logging.WARNING, logger="nlu.rasa_http"):
            parsed = clf.parse("楼道灯坏了")
    assert parsed == embedded.parse("楼道灯坏了")
    assert "could not be reached" in caplog.text and "楼道" not in caplog.text


def test_a_hanging_server_is_given_up_on_after_the_timeout(
        rasa: tuple[FakeRasa, str], embedded: nlu.Classifier) -> None:
    fake, url = rasa
    fake.fault = "hang"
    with RasaClassifier(url, timeout=0.2, embedded=embedded) as clf:
        parsed = clf.parse("楼道灯坏了")
        assert fake.answered == 0  # the server is still holding the request
    assert parsed == embedded.parse("楼道灯坏了")
    assert clf.last_failure is not None and "did not answer within 0.2 s" in clf.last_failure


def test_recovery_is_noticed(rasa: tuple[FakeRasa, str], embedded: nlu.Classifier,
                             caplog: pytest.LogCaptureFixture) -> None:
    fake, url = rasa
    with RasaClassifier(url, embedded=embedded, retry_after=0) as clf, \
            caplog.at_level(logging.INFO, logger="nlu.rasa_http"):
        fake.fault = "html_500"
        assert clf.parse("楼上吵").kind == embedded.parse("楼上吵").kind
        fake.fault = None
        assert clf.parse("谢谢").intent == "thanks"
        assert clf.status() == {"url": url, "answering": True, "fallbacks": 1,
                                "last_failure": f"Rasa at {url} answered HTTP 500"}
    assert "answers again" in caplog.text


def test_after_a_failure_rasa_rests_and_the_embedded_model_answers_at_once(
        rasa: tuple[FakeRasa, str], embedded: nlu.Classifier) -> None:
    """A hanging or broken server costs one failure, not one per message."""
    fake, url = rasa
    with RasaClassifier(url, embedded=embedded, retry_after=3600) as clf:
        fake.fault = "html_500"
        clf.parse("楼上吵")
        fake.fault = None
        for text in ("谢谢", "楼道灯坏了", "建议加装电梯"):
            assert clf.parse(text) == embedded.parse(text)
        assert fake.texts == ["楼上吵"] and clf.fallbacks == 4


def test_warm_up_sends_one_parse_in_the_background(rasa: tuple[FakeRasa, str],
                                                   embedded: nlu.Classifier) -> None:
    fake, url = rasa
    with RasaClassifier(url, embedded=embedded) as clf:
        assert clf.status()["answering"] is None
        clf.start_warm_up().join(timeout=10)
        assert fake.texts == [WARM_UP_TEXT] and fake.answered == 1
        assert clf.status()["answering"] is True and clf.fallbacks == 0


def test_warm_up_of_a_server_that_is_down_counts_no_message(embedded: nlu.Classifier) -> None:
    with RasaClassifier(refused_url(), embedded=embedded) as clf:
        assert clf.warm_up() is False
        assert clf.status()["answering"] is False and clf.fallbacks == 0


# --------------------------------------------------------------------------- griddesk nlu parse


def test_nlu_parse_with_the_rasa_backend_prints_rasas_reading(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeRasa(token="s3cret")
    with fake.serving() as url:
        for name, value in (("NLU_BACKEND", "rasa"), ("RASA_URL", url), ("RASA_TOKEN", "s3cret")):
            monkeypatch.setenv(name, value)
        monkeypatch.setattr("sys.stdin", io.StringIO("井盖不见了\n" + json.dumps({"text": "谢谢"}) + "\n"))
        assert run("parse") == 0
    out = capsys.readouterr()
    first, second = (json.loads(line) for line in out.out.splitlines())
    # A label of the server's own taxonomy: the embedded model never answers it.
    assert (first["kind"], first["intent"], first["category"]) == (
        "other", "out_of_scope", "municipal_manhole_covers")
    assert first["alternative_kind"] == "service_request"
    assert (second["intent"], second["confidence"]["kind"]) == ("thanks", 0.93)
    assert fake.texts == ["井盖不见了", "谢谢"] and fake.tokens == ["s3cret", "s3cret"]
    assert out.err == ""


def test_nlu_parse_says_on_stderr_when_the_embedded_model_answered(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        embedded: nlu.Classifier) -> None:
    fake = FakeRasa()
    fake.fault = "hang"
    with fake.serving() as url:
        for name, value in (("NLU_BACKEND", "rasa"), ("RASA_URL", url), ("RASA_TIMEOUT", "0.2")):
            monkeypatch.setenv(name, value)
        monkeypatch.setattr("sys.stdin", io.StringIO("井盖不见了\n"))
        assert run("parse") == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == embedded.parse("井盖不见了").to_json()
    assert out.err == (f"line 1: Rasa at {url} did not answer within 0.2 s; "
                       "the embedded model answered\n")


def test_nlu_eval_with_rasa_down_says_how_many_the_embedded_model_read(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in LABELLED), encoding="utf-8")
    monkeypatch.setenv("NLU_BACKEND", "rasa")
    monkeypatch.setenv("RASA_URL", refused_url())
    assert run("eval", "--data", str(data), "--json") == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["kind"]["n"] == len(LABELLED)
    assert f"{len(LABELLED)} of {len(LABELLED)} messages were read by the embedded model" in out.err


def test_ping_tells_whether_the_server_answers(rasa: tuple[FakeRasa, str],
                                               embedded: nlu.Classifier) -> None:
    fake, url = rasa
    with RasaClassifier(url, embedded=embedded) as clf:
        assert clf.ping() == "Hello from Rasa: 3.6.21"
    assert fake.texts == []  # no parse, so no message in the server's log either
    with RasaClassifier(refused_url(), embedded=embedded) as clf, \
            pytest.raises(NLUUnavailable, match="did not answer"):
        clf.ping()


@pytest.mark.parametrize("url", ["127.0.0.1:5005", "localhost", "ftp://rasa.example.org", "http://"])
def test_a_url_that_cannot_reach_a_server_is_refused_at_start(url: str) -> None:
    with pytest.raises(nlu.NLUError, match="URL of a Rasa server"):
        RasaClassifier(url)


def test_nlu_parse_with_a_bad_rasa_url_fails_with_a_message(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NLU_BACKEND", "rasa")
    monkeypatch.setenv("RASA_URL", "rasa:5005")
    monkeypatch.setattr("sys.stdin", io.StringIO("你好\n"))
    assert run("parse") == 2
    assert "rasa:5005" in capsys.readouterr().err


def test_rasa_urgency_is_held_to_the_life_risk_lexicon(rasa: tuple[FakeRasa, str],
                                                       embedded: nlu.Classifier) -> None:
    """Rasa flags any mention of gas; a danger that is over is not urgent, as with the embedded
    model (nlu/lifeline.py)."""
    _, url = rasa
    with RasaClassifier(url, embedded=embedded) as clf:
        assert clf.parse("楼道里有很浓的煤气味，快来人").urgent is True
        over = clf.parse("昨天的煤气味已经没有了，燃气公司修好了，谢谢")
    assert over.urgent is False
