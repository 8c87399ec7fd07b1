"""What a handler needs to serve one message: the session, the time, state, the classifier."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from nlu.parse import Parse
from storage.state import StateStore


class Classifier(Protocol):
    """The NLU seam (nlu.Classifier): text in, Parse out."""

    def parse(self, text: str) -> Parse: ...


@dataclass
class Desk:
    session: Session
    now: dt.datetime
    state: StateStore
    classifier: Classifier
    clarify_below: float = 0.5
    max_text: int = 2000

    def pending_key(self, channel: str, address: str) -> str:
        return f"pending:{channel}:{address}"

    def just_filed_key(self, channel: str, address: str) -> str:
        """Where the case this address filed last is noted, for a 取消 right after filing."""
        return f"filed:{channel}:{address}"

    def expect(self, channel: str, address: str, what: str, **data: Any) -> None:
        """Remember that the next text from this address answers `what`."""
        self.state.put(self.pending_key(channel, address), {"await": what, **data}, ttl=3600)
