"""Admin actions on at most ``ADMIN_ACTION_MAX_OBJECTS`` objects.

"Select all 1,000,000" and an action ran it on every one in the request: Django's
``delete_selected`` lists every object and each one it cascades to on its confirmation page,
and our actions call a service per object. Past the bound, the action is refused with a
message that says how to narrow it (a filter, a search); nothing is changed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.db.models import QuerySet
from django.http import HttpRequest

Action = Callable[[Any, HttpRequest, QuerySet], Any]


def bounded(action: Action) -> Action:
    """``action``, refused on more than ``ADMIN_ACTION_MAX_OBJECTS`` objects."""

    @functools.wraps(action)  # keeps its description and permissions
    def run(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> Any:
        limit = settings.ADMIN_ACTION_MAX_OBJECTS
        count = queryset.order_by().count()
        if count > limit:
            modeladmin.message_user(
                request,
                f"{count:,} objects were selected; an action runs on at most {limit:,} at a "
                "time. Narrow the list with a filter or a search, then select again.",
                messages.ERROR,
            )
            return None
        return action(modeladmin, request, queryset)

    return run


def install() -> None:
    """Replace the site-wide ``delete_selected`` with its bounded form."""
    admin.site.add_action(bounded(delete_selected), "delete_selected")
