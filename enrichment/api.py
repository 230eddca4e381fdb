"""REST API: components and their import, projects, BOMs, their lines, enrichment runs, export.

Everything is scoped to the caller's organization (``imports.tenancy``): another tenant's BOM,
line or component is a 404. Viewers read; operators and admins upload, start and resolve.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ParseError, UnsupportedMediaType, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from imports.models import Membership
from imports.pagination import IntakePagination, whole_number
from imports.serializers import ImportJobSerializer
from imports.tenancy import ORG_HEADER, IsMember, membership_for, request_membership

from . import selectors, services
from .models import Bom, BomLine, Component, Lifecycle, MatchStatus, Project
from .serializers import (
    BomSerializer,
    ComponentSerializer,
    ProjectSerializer,
    bom_detail,
    lines_payload,
)


def _org(request: Request):
    return request_membership(request).organization


def bom_or_404(request: Request, bom_id: Any) -> Bom:
    bom = Bom.objects.filter(organization=_org(request), pk=bom_id).first()
    if bom is None:
        raise NotFound("No such BOM.")
    return bom


def _choice(value: str | None, choices: type, name: str) -> str | None:
    if value in (None, ""):
        return None
    allowed = [c.value for c in choices if c.value]
    if value not in allowed:
        raise ValidationError({name: f"Unknown {name} '{value}': use one of {', '.join(allowed)}."})
    return value


# ---------------------------------------------------------------------- components


class ComponentUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .csv, .tsv, .txt or .xlsx component file.")
    priority = serializers.ChoiceField(choices=["high", "default", "low"], default="default")


class ComponentImportView(APIView):
    permission_classes = [IsMember]
    parser_classes = [MultiPartParser]

    @extend_schema(request=ComponentUploadSerializer, responses={202: ImportJobSerializer})
    def post(self, request: Request) -> Response:
        form = ComponentUploadSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        job = services.component_import_create(
            organization=_org(request),
            user=request.user,
            upload=form.validated_data["file"],
            priority=form.validated_data["priority"],
        )
        response = Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/jobs/{job.id}"
        return response


class ComponentListView(generics.ListAPIView):
    permission_classes = [IsMember]
    serializer_class = ComponentSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("mpn", str, description="prefix of the normalized MPN"),
            OpenApiParameter("manufacturer", str),
            OpenApiParameter("lifecycle", str, enum=[c.value for c in Lifecycle]),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Component]:
        from .matching import manufacturer_key, normalize_mpn

        qs = Component.objects.filter(organization=_org(self.request))
        params = self.request.query_params
        if params.get("mpn"):
            key = normalize_mpn(params["mpn"])
            qs = qs.filter(mpn_norm__startswith=key) if key else qs.none()
        if params.get("manufacturer"):
            wanted = manufacturer_key(params["manufacturer"])
            aliases = selectors.alias_map(organization_id=_org(self.request).id)
            qs = qs.filter(manufacturer_key=manufacturer_key(aliases.get(wanted, wanted)))
        lifecycle = _choice(params.get("lifecycle"), Lifecycle, "lifecycle")
        if lifecycle:
            qs = qs.filter(lifecycle=lifecycle)
        return qs.order_by("mpn_norm", "id")


# ---------------------------------------------------------------------- projects


class ProjectListView(generics.ListCreateAPIView):
    permission_classes = [IsMember]
    serializer_class = ProjectSerializer

    def get_queryset(self) -> QuerySet[Project]:
        return Project.objects.filter(organization=_org(self.request)).order_by("name")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = ProjectSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        project = services.project_create(
            organization=_org(request),
            user=request.user,
            name=form.validated_data["name"],
            description=form.validated_data.get("description", ""),
        )
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


# ---------------------------------------------------------------------- BOMs


class BomUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .csv, .tsv, .txt or .xlsx BOM.")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    project_id = serializers.IntegerField(required=False, allow_null=True, default=None)


class BomListView(generics.ListAPIView):
    permission_classes = [IsMember]
    serializer_class = BomSerializer
    parser_classes = [MultiPartParser]

    @extend_schema(parameters=[OpenApiParameter("project_id", {"type": "integer", "minimum": 0})])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Bom]:
        qs = Bom.objects.filter(organization=_org(self.request)).select_related(
            "project", "latest_job"
        )
        project = self.request.query_params.get("project_id")
        if project:
            # ASCII and bigint-sized first: int() of 5,000 digits raised (a 500)
            if not (project.isascii() and project.isdecimal()) or len(project) > 18:
                shown = project if len(project) <= 40 else project[:40] + "…"
                raise ValidationError({"project_id": f"project_id '{shown}' is not a number."})
            qs = qs.filter(project_id=int(project))
        return qs.order_by("-created_at")

    @extend_schema(request=BomUploadSerializer, responses={201: BomSerializer})
    def post(self, request: Request) -> Response:
        form = BomUploadSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        data = form.validated_data
        org = _org(request)
        project = None
        if data["project_id"] is not None:
            project = Project.objects.filter(organization=org, pk=data["project_id"]).first()
            if project is None:
                raise ValidationError(
                    {"project_id": f"project_id {data['project_id']} is not one of your projects."}
                )
        bom, problems = services.bom_create(
            organization=org,
            user=request.user,
            upload=data["file"],
            name=data["name"],
            project=project,
        )
        body = bom_detail(bom)
        body["row_errors"] = problems[:100]
        return Response(body, status=status.HTTP_201_CREATED)


class BomDetailView(APIView):
    permission_classes = [IsMember]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, bom_id: int) -> Response:
        return Response(bom_detail(bom_or_404(request, bom_id)))


class BomLinesView(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        parameters=[
            OpenApiParameter("match_status", str, enum=[c.value for c in MatchStatus]),
            OpenApiParameter("lifecycle", str, enum=[c.value for c in Lifecycle]),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 0},
                description=f"{IntakePagination.default_limit} by default, "
                f"at most {IntakePagination.max_limit} (a larger value is clamped)",
            ),
            OpenApiParameter(
                "page_size",
                {"type": "integer", "minimum": 0},
                description=f"Alias of limit (at most {IntakePagination.max_limit}).",
            ),
            OpenApiParameter("offset", {"type": "integer", "minimum": 0}),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, bom_id: int) -> Response:
        bom = bom_or_404(request, bom_id)
        qs = BomLine.objects.filter(bom=bom).select_related("component")
        params = request.query_params
        wanted = _choice(params.get("match_status"), MatchStatus, "match_status")
        if wanted:
            qs = qs.filter(match_status=wanted)
        lifecycle = _choice(params.get("lifecycle"), Lifecycle, "lifecycle")
        if lifecycle:
            qs = qs.filter(lifecycle=lifecycle)
        paginator = IntakePagination()
        page = paginator.paginate_queryset(qs.order_by("line_number"), request, view=self)
        return paginator.get_paginated_response(lines_payload(bom, page or []))


class LineResolveSerializer(serializers.Serializer):
    component_id = serializers.IntegerField()


class BomLineView(APIView):
    permission_classes = [IsMember]
    parser_classes = [JSONParser, FormParser]

    @extend_schema(request=LineResolveSerializer, responses={200: OpenApiTypes.OBJECT})
    def patch(self, request: Request, bom_id: int, line_id: int) -> Response:
        bom = bom_or_404(request, bom_id)
        line = BomLine.objects.filter(bom=bom, pk=line_id).select_related("bom").first()
        if line is None:
            raise NotFound("No such line in this BOM.")
        form = LineResolveSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        line = services.line_resolve(
            line=line, component_id=form.validated_data["component_id"], user=request.user
        )
        return Response(lines_payload(bom, [line])[0])


class EnrichmentStartSerializer(serializers.Serializer):
    """What the start takes (the view reads it leniently, to name each problem itself)."""

    priority = serializers.IntegerField(required=False, min_value=1, max_value=10, default=5)
    only = serializers.ChoiceField(
        choices=["all", "unresolved"], required=False, help_text="all lines (default)"
    )
    project_id = serializers.IntegerField(
        required=False, allow_null=True, help_text="when given, must be the BOM's project"
    )


class EnrichmentStartView(APIView):
    permission_classes = [IsMember]
    parser_classes = [JSONParser, FormParser]

    def check_permissions(self, request: Request) -> None:
        # the body's organization_id (the seed's contract) picks which of the caller's
        # organizations the BOM is looked up in, as the X-Organization header does; the role
        # checked is the caller's role there. A header or ?organization= still wins.
        # A body that cannot be read names no organization. For a member of one, the role is
        # checked first (a viewer is told 403, not how the body was wrong), then ``post``
        # reports the body. A member of several is told about the body at once: which of
        # their organizations (and roles) it meant cannot be known.
        self._unreadable: ParseError | UnsupportedMediaType | None = None
        try:
            self._organization_from_body(request)
        except (ParseError, UnsupportedMediaType) as exc:
            if Membership.objects.filter(user=request.user)[:2].count() > 1:
                raise
            self._unreadable = exc
        super().check_permissions(request)

    @staticmethod
    def _body_organization_id(request: Request) -> int | None:
        """The body's ``organization_id`` (None when it gives none), read once for both
        checks; one that is not a whole number is 400."""
        body = request.data
        raw = body.get("organization_id") if isinstance(body, dict) else None
        if raw in (None, ""):
            return None
        value = whole_number(str(raw), digits=18)  # True is not 1 here: str(True) is "True"
        if value is None:
            shown = str(raw)[:40]
            raise ValidationError(
                {
                    "organization_id": f"organization_id must be the numeric id of one of your "
                    f"organizations (got {shown!r}), or left out."
                }
            )
        return value

    def _organization_from_body(self, request: Request) -> None:
        if request.META.get(ORG_HEADER) or request.GET.get("organization"):
            return
        if not (request.user and request.user.is_authenticated):
            return
        org_id = self._body_organization_id(request)
        if org_id is None:
            return
        membership = membership_for(request.user, str(org_id))
        if membership is None:  # not one of the caller's: as another tenant's BOM
            raise NotFound("No such BOM.")
        request._intake_membership = membership

    @extend_schema(
        request=EnrichmentStartSerializer,
        responses={202: ImportJobSerializer, 409: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, bom_id: int) -> Response:
        bom = bom_or_404(request, bom_id)
        if self._unreadable is not None:
            # DRF raises a body's parse error once, then reads it as empty: raised again here
            raise self._unreadable
        body = request.data
        if not isinstance(body, dict):  # a JSON list or string was silently taken for {}
            raise ValidationError(
                {"body": 'The body must be a JSON object such as {"priority": 5}, or empty.'}
            )
        org_id = self._body_organization_id(request)
        if org_id is not None and org_id != bom.organization_id:
            raise NotFound("No such BOM.")
        project_id = body.get("project_id")
        if project_id not in (None, "") and str(project_id) != str(bom.project_id):
            shown = str(project_id)
            shown = shown if len(shown) <= 40 else shown[:40] + "…"
            raise ValidationError(
                {"project_id": f"project_id {shown} is not the project of BOM {bom.id}."}
            )
        priority = body.get("priority", 5)
        if priority in (None, ""):
            priority = 5
        text = str(priority).strip()
        # ASCII and short before int(): int() of 5,000 digits raises (a 500 before)
        if isinstance(priority, bool) or not (text.isascii() and text.isdecimal()) or len(text) > 3:
            shown = text if len(text) <= 40 else text[:40] + "…"
            raise ValidationError(
                {"priority": f"priority must be a whole number from 1 to 10 (got {shown!r})."}
            )
        priority = int(text)
        if not 1 <= priority <= 10:
            raise ValidationError(
                {"priority": f"priority must be a whole number from 1 to 10 (got {priority})."}
            )
        try:
            job = services.enrichment_start(
                bom=bom, user=request.user, priority=priority, only=body.get("only")
            )
        except services.RunInProgress as exc:
            return Response(
                {"detail": exc.message, "job_id": str(exc.job.id), "status": exc.job.status},
                status=status.HTTP_409_CONFLICT,
            )
        response = Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/jobs/{job.id}"
        return response
