"""Which organization a request acts for, and what its role allows."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import Membership

ORG_HEADER = "HTTP_X_ORGANIZATION"


def membership_for(user: Any, wanted: str | None = None) -> Membership | None:
    """The caller's membership: the one named by slug or id, else their oldest."""
    if not getattr(user, "is_authenticated", False):
        return None
    qs = Membership.objects.select_related("organization").filter(user=user)
    if wanted:
        if wanted.isdigit():
            return qs.filter(organization_id=int(wanted)).first()
        return qs.filter(organization__slug=wanted).first()
    return qs.order_by("created_at", "id").first()


def request_membership(request: Any) -> Membership:
    cached = getattr(request, "_intake_membership", None)
    if cached is not None:
        return cached
    wanted = request.META.get(ORG_HEADER) or request.GET.get("organization")
    membership = membership_for(request.user, wanted)
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
