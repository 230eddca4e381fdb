"""Statement and lock timeouts for each kind of process (settings ``DB_TIMEOUTS``).

The web process (``config/asgi.py``) and the workers (``imports/worker.py``) each call
``apply()`` once at start, before their first query; a management command (``migrate`` on a big
table) keeps the server's defaults. The limits go into libpq's ``options``, so every new
connection has them from its first statement, at no extra round trip.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.db import connections

_OURS = re.compile(r"-c\s*(statement_timeout|lock_timeout)=\S+")


def apply(role: str) -> None:
    """Give every connection opened from now on the timeouts of ``role`` ("web", "worker")."""
    statement_ms, lock_ms = settings.DB_TIMEOUTS[role]
    flags = f"-c statement_timeout={int(statement_ms)} -c lock_timeout={int(lock_ms)}"
    for alias in connections:
        options = connections[alias].settings_dict.setdefault("OPTIONS", {})
        kept = _OURS.sub("", options.get("options", "")).strip()
        options["options"] = f"{kept} {flags}".strip()
    connections.close_all()  # an already-open connection would keep the old limits
