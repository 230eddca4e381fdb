"""A throwaway topic kind, ``widget:<org id>-<n>``, registered the way an app registers its own:
it proves that a kind plugs into the core with one registration and no change to ``realtime/``.

``asgi`` is config.asgi's application with the kind registered, for a daphne of the tests' own.
A widget whose number is ``done`` has ended.
"""

from __future__ import annotations

from typing import Any

from realtime import topics

TERMINAL = frozenset({"widget.finished"})


def visible(ident: str, organization_id: int) -> bool:
    return ident.startswith(f"{organization_id}-")


def state(ident: str) -> dict[str, Any] | None:
    return {"widget": {"id": ident, "done": ident.endswith("-done")}}


def ended(body: dict[str, Any]) -> bool:
    return bool(body["widget"]["done"])


def register() -> None:
    topics.register(
        "widget", authorize=visible, snapshot=state, ended=ended, terminal_events=TERMINAL
    )
