"""A throwaway topic kind, ``widget:<org id>-<n>``, registered the way an app registers its own:
it proves that a kind plugs into the core with one registration and no change to ``realtime/``.

``asgi`` is config.asgi's application with the kind registered, for a daphne of the tests' own.
A widget whose number is ``done``, or whose last event is ``widget.finished``, has ended.
"""

from __future__ import annotations

from typing import Any

from realtime import log, topics

TERMINAL = frozenset({"widget.finished"})


def visible(ident: str, organization_id: int) -> bool:
    return ident.startswith(f"{organization_id}-")


def state(ident: str) -> dict[str, Any] | None:
    # a widget's state agrees with its events, as an app's does with its rows
    last = log.last_event(f"widget:{ident}")
    finished = last is not None and last["type"] in TERMINAL
    return {"widget": {"id": ident, "done": ident.endswith("-done") or finished}}


def ended(body: dict[str, Any]) -> bool:
    return bool(body["widget"]["done"])


def register() -> None:
    topics.register(
        "widget", authorize=visible, snapshot=state, ended=ended, terminal_events=TERMINAL
    )
