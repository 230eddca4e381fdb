"""ASGI entry point: the realtime streams (SSE, WebSocket) and Django for everything else."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from config import database_timeouts  # noqa: E402

database_timeouts.apply("web")  # statement and lock timeouts for requests

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from config import body_limit  # noqa: E402
from enrichment.routing import http_patterns as enrichment_http_patterns  # noqa: E402
from realtime import daphne_compat  # noqa: E402
from realtime.access import SessionUserMiddleware  # noqa: E402
from realtime.origins import OriginValidator  # noqa: E402
from realtime.routing import http_patterns, websocket_patterns  # noqa: E402

daphne_compat.install()  # WebSocket closes 1008 and 1012; a clean shutdown
body_limit.install_daphne()  # 413 while the body arrives, before it is stored whole

application = ProtocolTypeRouter(
    {
        "http": body_limit.BodyLimitMiddleware(
            URLRouter([*http_patterns, *enrichment_http_patterns, re_path(r"", django_asgi_app)])
        ),
        # an Origin is checked when sent (browsers); programs send none and use tokens
        "websocket": OriginValidator(SessionUserMiddleware(URLRouter(websocket_patterns))),
    }
)
