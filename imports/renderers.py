"""The API's JSON renderer."""

from __future__ import annotations

from typing import Any

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    """DRF's, which writes non-ASCII text as UTF-8, falling back to ASCII escapes for a
    response that UTF-8 cannot hold.

    A JSON body may carry a lone surrogate (``"\\ud800"``: ``json.loads`` accepts it), and an
    error message that names the value it refuses echoes it; UTF-8 has no encoding for it, so
    DRF's ``render`` raised ``UnicodeEncodeError`` after the exception handler had run: a 500
    for a request that deserved its 400. Escaped (``ensure_ascii``), the same answer is valid
    JSON and says the same thing."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: dict[str, Any] | None = None,
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            self.ensure_ascii = True  # a renderer is made for each response
            return super().render(data, accepted_media_type, renderer_context)
