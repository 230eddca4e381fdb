"""config.asgi with the throwaway ``widget`` topic kind registered (tests/realtime/widgets.py)."""

from __future__ import annotations

from config.asgi import application  # noqa: F401  (sets Django up: the apps register first)
from tests.realtime import widgets

widgets.register()
