"""Which organization a request acts for, and what its role allows."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import Membership

ORG_HEADER = "HTTP_X_ORGANIZATION"
# An organization is named by its id (ASCII digits within bigint) or its slug (SlugField).
# Checked before any query: "²".isdigit() is true but int("²") raises, a 30-digit id is out of
# the column's range, and a NUL byte is refused by PostgreSQL — each was a 500.
_ORG_ID = re.compile(r"[0-9]+")
_ORG_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")


class InvalidOrganization(ValueError):
    """A malformed organization selector; the message names it, for a 400."""


def parse_organization(wanted: str) -> tuple[str, int | str]:
    """``("id", n)`` or ``("slug", s)`` for an ``X-Organization`` header or ``organization``
    parameter; raises ``InvalidOrganization`` for anything that is neither."""
    shown = wanted if len(wanted) <= 40 else wanted[:40] + "…"
    if _ORG_ID.fullmatch(wanted):  # all digits: an id, as it always was
        if len(wanted) > 18:
            raise InvalidOrganization(f"Organization id {shown!r} is out of range.")
        return "id", int(wanted)
    if _ORG_SLUG.fullmatch(wanted):
        return "slug", wanted
    raise InvalidOrganization(
        f"Organization {shown!r} is not an organization id or slug "
        "(digits, or letters, digits, '-' and '_')."
    )


def membership_for(user: Any, wanted: str | None = None) -> Membership | None:
    """The caller's membership: the one named by slug or id, else their oldest.

    Raises ``InvalidOrganization`` when ``wanted`` is neither an id nor a slug."""
    if not getattr(user, "is_authenticated", False):
        return None
    qs = Membership.objects.select_related("organization").filter(user=user)
    if wanted:
        kind, value = parse_organization(wanted)
        if kind == "id":
            return qs.filter(organization_id=value).first()
        return qs.filter(organization__slug=value).first()
    return qs.order_by("created_at", "id").first()


def request_membership(request: Any) -> Membership:
    cached = getattr(request, "_intake_membership", None)
    if cached is not None:
        return cached
    wanted = request.META.get(ORG_HEADER) or request.GET.get("organization")
    try:
        membership = membership_for(request.user, wanted)
    except InvalidOrganization as exc:
        raise ValidationError({"organization": str(exc)}) from exc
    if membership is None:
        raise PermissionDenied(
            "You are not a member of this organization."
            if wanted
            else "Your account belongs to no organization; ask an admin to add you to one."
        )
    request._intake_membership = membership
    return membership


class IsMember(BasePermission):
    """Any member may read; only operators and admins may change (upload, cancel, retry)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        membership = request_membership(request)
        if request.method in SAFE_METHODS or membership.can_operate:
            return True
        raise PermissionDenied(
            f"Your role '{membership.role}' can only watch imports; "
            "uploading, cancelling and retrying need the operator or admin role."
        )
