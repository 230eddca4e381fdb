"""Values PostgreSQL cannot take get a 400 on the pages and in the admin, not a 500.

PostgreSQL refuses a NUL character in text, and psycopg refuses to send one: any query or form
parameter that reaches a query (the admin's search, its filters and autocomplete, a page's own
filters) with a NUL in it was a 500. The API checks its parameters itself and answers in JSON,
so this guards every other path. A value the database itself refuses (``DataError``: an
invalid regular expression in an admin ``__regex`` filter, a number out of a column's range)
is a 400 naming it, too. So is a year lookup outside 1 to 9999 (``?created_at__year=10000``):
Python's dates end there, and the query could not be built.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from django.db import DataError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.datastructures import MultiValueDict

log = logging.getLogger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# the lookups whose bounds Python computes as dates (``__in`` and ``__range`` compare numbers)
_YEAR_LOOKUP = re.compile(r"__(iso_)?year(?:__(?:exact|gt|gte|lt|lte))?\Z")


def _with_nul(params: MultiValueDict) -> str | None:
    for name, values in params.lists():
        if "\x00" in name or any("\x00" in v for v in values if isinstance(v, str)):
            return name.replace("\x00", "\\x00")[:80]
    return None


def _bad_year(params: MultiValueDict) -> str | None:
    for name, values in params.lists():
        lookup = _YEAR_LOOKUP.search(name)
        if lookup is None:
            continue
        # an ISO year's bounds reach into the next year's first week
        last = 9998 if lookup.group(1) else 9999
        for value in values:
            try:
                year = int(value)  # as Django reads it: '+10000', '1_0000', full-width digits
            except ValueError:
                continue  # not a number: Django refuses it itself
            if not 1 <= year <= last:
                return name[:80]
    return None


class RefusedValuesMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any):
        """After the CSRF check (listed before this): a forged or anonymous POST is refused
        there, before its body is parsed here."""
        if request.path_info.startswith("/api/"):
            return None
        name = _with_nul(request.GET)
        if name is None and request.method == "POST" and request.content_type in FORM_TYPES:
            name = _with_nul(request.POST)
        if name is None:
            year = _bad_year(request.GET)
            if year is None:
                return None
            return HttpResponseBadRequest(
                f"The parameter '{year}' must be a year from 1 to 9999 (9998 for an ISO year).",
                content_type="text/plain; charset=utf-8",
            )
        return HttpResponseBadRequest(
            f"The parameter '{name}' holds a NUL character, which no field can store.",
            content_type="text/plain; charset=utf-8",
        )

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if request.path_info.startswith("/api/") or not isinstance(exception, DataError):
            return None
        # logged: a value the request sent is the usual cause, but a bug of ours can be too
        log.warning("database refused a value on %s", request.path_info, exc_info=exception)
        reason = str(exception).strip().splitlines()[0][:200] if str(exception).strip() else ""
        return HttpResponseBadRequest(
            f"The database refused a value in this request: {reason}",
            content_type="text/plain; charset=utf-8",
        )
