"""The one pagination for every list endpoint: ``limit``/``offset``, with a hard cap.

DRF's ``LimitOffsetPagination`` has no ``max_limit`` by default: ``?limit=<huge>`` serialized a
whole 1.2M-row table in one request and the server was killed for its memory. Here ``limit``
(or its alias ``page_size``) is clamped to ``max_limit``, and ``offset`` to ``MAX_OFFSET`` (a
bigger one would only reach PostgreSQL as an out-of-range OFFSET). Anything that is not a plain
ASCII whole number falls back to the default, as DRF does for ``limit``.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

_WHOLE = re.compile(r"[0-9]+")
# far past any real catalogue; a bigger OFFSET is out of PostgreSQL's bigint range
MAX_OFFSET = 10**12


def whole_number(raw: Any, *, digits: int = 19) -> int | None:
    """``raw`` as a non-negative int when it is at most ``digits`` plain ASCII digits, else
    None (18 keeps a database id inside bigint).

    Not ``str.isdigit()`` + ``int()``: ``"²".isdigit()`` is true and ``int("²")`` raises.
    """
    if not isinstance(raw, str):
        return None
    raw = raw.strip()
    if len(raw) > digits or not _WHOLE.fullmatch(raw):
        return None
    return int(raw)


class IntakePagination(LimitOffsetPagination):
    """``?limit=N&offset=M`` (``page_size`` is an alias of ``limit``); ``limit`` is at most
    ``API_MAX_PAGE_SIZE`` whatever was asked, and the response says which was used."""

    default_limit = settings.API_PAGE_SIZE
    max_limit = settings.API_MAX_PAGE_SIZE
    page_size_query_param = "page_size"

    def get_limit(self, request: Request) -> int:
        for name in (self.limit_query_param, self.page_size_query_param):
            value = whole_number(request.query_params.get(name))
            if value is not None and value > 0:
                return min(value, self.max_limit)
        return self.default_limit

    def get_offset(self, request: Request) -> int:
        value = whole_number(request.query_params.get(self.offset_query_param))
        return 0 if value is None else min(value, MAX_OFFSET)

    def get_paginated_response(self, data: Any) -> Any:
        response = super().get_paginated_response(data)
        response.data["limit"] = self.limit
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        out = super().get_paginated_response_schema(schema)
        out["properties"]["limit"] = {"type": "integer", "example": self.default_limit}
        out["required"] = [*out.get("required", []), "limit"]
        return out

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.limit_query_param:
                param["description"] = (
                    f"Number of results per page: {self.default_limit} by default, "
                    f"at most {self.max_limit} (a larger value is clamped)."
                )
        params.append(
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Alias of limit (at most {self.max_limit}).",
                "schema": {"type": "integer"},
            }
        )
        return params
