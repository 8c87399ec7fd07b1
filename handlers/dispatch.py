"""The command surface: one place that maps what a person sends to the handler that serves it.

Workflows register their commands ("/status", "/agenda" …) and button actions ("ack", "rate" …)
with the decorators below; channels pass text and actions through `handle` and never need to
know which workflow answers. A new workflow only adds handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handlers.conversation import Actor, Reply
from handlers.desk import Desk

Handler = Callable[[Desk, Actor, str], list[Reply]]
PendingHandler = Callable[[Desk, Actor, dict[str, Any], str], list[Reply]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    staff: bool | None  # True: staff only; False: residents only; None: anyone


COMMANDS: dict[str, list[Route]] = {}
ACTIONS: dict[str, Route] = {}
PENDING: dict[str, PendingHandler] = {}
FREE_TEXT: dict[str, Handler] = {}  # "resident" / "staff" / "unbound" → what a plain message does


def command(*names: str, staff: bool | None = None) -> Callable[[Handler], Handler]:
    """Register a text command: `/name args` (names include aliases such as 我的工单)."""

    def register(fn: Handler) -> Handler:
        for name in names:
            COMMANDS.setdefault(name.lower(), []).append(Route(fn, staff))
        return fn

    return register


def action(prefix: str, staff: bool | None = None) -> Callable[[Handler], Handler]:
    """Register a button action "prefix:arg:arg"; the handler receives the text after the prefix."""

    def register(fn: Handler) -> Handler:
        ACTIONS[prefix] = Route(fn, staff)
        return fn

    return register


def pending(what: str) -> Callable[[PendingHandler], PendingHandler]:
    """Register what answers a pending prompt (Desk.expect(..., what)) with the prompt's data."""

    def register(fn: PendingHandler) -> PendingHandler:
        PENDING[what] = fn
        return fn

    return register


def text_step(*, prefix: str, commands: tuple[str, ...], what: str, key: str, staff: bool,
              ask: Handler, carry_out: Callable[[Desk, Actor, str, str], list[Reply]]) -> None:
    """Register a step that needs a text (a reply, a note, a reason) on the thing `ref` names.

    Its button (`prefix:ref`) asks for the text: `ask` replies with the prompt and records it
    with `Desk.expect(..., what, **{key: id})`. Its command carries the text (`/reply N text`)
    or asks when it does not; the next message answers the prompt. `carry_out(desk, actor, ref,
    text)` does the step.
    """

    def by_command(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
        ref, _, text = arg.partition(" ")
        if not text.strip():
            return ask(desk, actor, ref)
        return carry_out(desk, actor, ref, text.strip())

    def answer(desk: Desk, actor: Actor, prompt: dict[str, Any], text: str) -> list[Reply]:
        return carry_out(desk, actor, str(prompt[key]), text)

    action(prefix, staff=staff)(ask)
    command(*commands, staff=staff)(by_command)
    pending(what)(answer)


def free_text(who: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        FREE_TEXT[who] = fn
        return fn

    return register


def split_command(text: str) -> tuple[str, str] | None:
    """("/status", "ZN-…") for a command message, else None; "/status@botname" is accepted."""
    stripped = text.strip()
    first, _, rest = stripped.partition(" ")
    name = first.split("@", 1)[0].lower()
    if name in COMMANDS:
        return name, rest.strip()
    return None


def allowed(route: Route, actor: Actor) -> bool:
    return route.staff is None or route.staff == actor.is_staff


def command_for(name: str, actor: Actor) -> Route | None:
    """The registration of a command that serves this actor (residents and staff may differ)."""
    for route in COMMANDS.get(name, []):
        if allowed(route, actor):
            return route
    return None
