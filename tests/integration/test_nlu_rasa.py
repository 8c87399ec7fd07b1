"""The Rasa backend against a loopback server answering Rasa's /model/parse JSON."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import nlu
from nlu import NLUUnavailable, RasaClassifier
from tests.fakes.rasa import FakeRasa
from tests.fakes.serving import serve


@pytest.fixture(scope="module")
def embedded() -> nlu.Classifier:
    return nlu.load()


@pytest.fixture
def rasa() -> Iterator[tuple[FakeRasa, str]]:
    fake = FakeRasa()
    with serve(fake.app) as url:
        yield fake, url


def test_rasa_intent_gives_the_kind_and_entities_give_category_and_urgency(
        rasa: tuple[FakeRasa, str], embedded: nlu.Classifier) -> None:
    fake, url = rasa
    with RasaClassifier(url, embedded=embedded) as clf:
        parsed = clf.parse("3栋2单元301门口的灯坏了，还有煤气味")
    assert fake.texts == ["3栋2单元301门口的灯坏了，还有煤气味"]
    assert (parsed.kind, parsed.intent) == ("service_request", None)
    assert parsed.confidence["kind"] == pytest.approx(0.93)
    assert (parsed.category, parsed.confidence["category"]) == ("facilities", pytest.approx(0.88))
    assert parsed.urgent is True
    assert parsed.entity("room") == "301"
    # The embedded extractor adds what Rasa did not find.
    assert parsed.entity("building") == "3" and parsed.entity("unit") == "2"
    assert parsed.lang == "zh-Hans"


def test_small_talk_intent_becomes_kind_other(rasa: tuple[FakeRasa, str],
                                              embedded: nlu.Classifier) -> None:
    _, url = rasa
    with RasaClassifier(url, embedded=embedded) as clf:
        parsed = clf.parse("hello there")
    assert (parsed.kind, parsed.intent, parsed.lang) == ("other", "greet", "en")


def test_fallback_intent_is_out_of_scope_and_heads_come_from_the_embedded_model(
        rasa: tuple[FakeRasa, str], embedded: nlu.Classifier) -> None:
    _, url = rasa
    text = "社保卡丢了去哪里补办"
    with RasaClassifier(url, embedded=embedded) as clf:
        parsed = clf.parse(text)
    assert (parsed.kind, parsed.intent) == ("other", "out_of_scope")
    assert parsed.confidence["kind"] == pytest.approx(0.3)
    assert parsed.category == embedded.parse(text).category == "social_security"
    assert parsed.urgent is False


def test_token_is_sent_as_rasa_expects(rasa: tuple[FakeRasa, str], embedded: nlu.Classifier) -> None:
    fake, url = rasa
    with RasaClassifier(url, token="s3cret", embedded=embedded) as clf:
        clf.parse("谢谢")
    assert fake.tokens == ["s3cret"]


def test_rasa_failing_raises_nlu_unavailable(rasa: tuple[FakeRasa, str],
                                             embedded: nlu.Classifier) -> None:
    fake, url = rasa
    with RasaClassifier(url, embedded=embedded) as clf:
        fake.broken = True
        with pytest.raises(NLUUnavailable, match="did not answer"):
            clf.parse("你好")
        fake.broken, fake.garbage = False, True
        with pytest.raises(NLUUnavailable, match="not JSON"):
            clf.parse("你好")


def test_rasa_down_raises_nlu_unavailable(embedded: nlu.Classifier) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    with (RasaClassifier(f"http://127.0.0.1:{port}", timeout=1.0, embedded=embedded) as clf,
          pytest.raises(NLUUnavailable) as info):
        clf.parse("你好")
    assert isinstance(info.value, nlu.NLUError)
