"""OpenAPI additions: the error answers every operation can give, in the one error shape.

drf-spectacular documents only the success of each view; a client (and the schemathesis run in
the test suite) must also know that a bad parameter is a 400, a missing token a 401, another
tenant's job a 404, and so on, each as ``{"detail": "...", "errors": {...}}``.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What is wrong, for a person."},
        "errors": {"type": "object", "description": "Per field, for a program (400 only)."},
    },
    "required": ["detail"],
}

NO_NUL = "^[^\\x00]*$"

_ALWAYS = {
    "400": "Bad input: the detail names the parameter and what it takes.",
    "401": "Not authenticated.",
    "403": "Authenticated, but the role (or organization) does not allow it.",
}
_BY_SHAPE = {
    "404": "No such object in your organization (another tenant's is exactly like a missing one).",
    "409": "The job is not in a state that allows this action.",
    "413": "The upload is larger than the limit (the detail names it).",
    "503": "A backing service (the queue) is unavailable; try again.",
}


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOK: add the error answers to each operation that can give them."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "path" and schema.get("type") == "integer":
                    # Django's <int:...> matches digits only: -1 is no URL of ours
                    schema.setdefault("minimum", 0)
                if (
                    parameter.get("in") == "query"
                    and schema.get("type") == "string"
                    and not {"enum", "pattern", "format"} & schema.keys()
                ):
                    # a NUL character in any query value is a 400 (imports/api_errors.py):
                    # PostgreSQL's text cannot hold one
                    schema["pattern"] = NO_NUL
            codes = dict(_ALWAYS)
            if "{" in path:
                codes["404"] = _BY_SHAPE["404"]
            if method == "post" and path.rstrip("/").split("/")[-1] in (
                "cancel",
                "retry",
                "confirm",
            ):
                codes["409"] = _BY_SHAPE["409"]
            if method == "post" and path.endswith("/products/import"):
                codes["413"] = _BY_SHAPE["413"]
                codes["503"] = _BY_SHAPE["503"]
            if method == "post" and path.endswith("/projects"):
                codes["409"] = "A project of that name already exists in your organization."
            if path.endswith("/realtime/poll") or path.endswith("/realtime/tokens"):
                codes["404"] = _BY_SHAPE["404"]  # a topic that is not yours
            for code, description in codes.items():
                operation["responses"].setdefault(
                    code,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    return result
