"""The error answers of every operation, in the OpenAPI document.

FastAPI documents what a route returns and a 422 of its own shape; notiflow's errors share one
shape (``{"error": {"code", "message", "details"}}``, :func:`notiflow.kit.errors.error_body`)
and come from many places a route does not declare (authentication, tenant scoping, the body
size limit, a database outage). :func:`document_errors` adds them to every operation, so a
client generated from ``/openapi.json`` — or a checker such as schemathesis — knows each answer:

==========  ==================================================  ===========================
status      when                                                operations
==========  ==================================================  ===========================
400         the body is not valid JSON; Pusher HTTP API         with a body; ``/apps/``
            parameters out of range
401         no or a bad bearer token / signature / password     all but ``/health``
403         the token's role may not do this                    all but ``/health``
404         not found, or another tenant's (never shown)        all but ``/health``
409         a duplicate, or an Idempotency-Key reused           POST, PUT, PATCH, DELETE
413         the body is over the size limit                     with a body
422         the input does not validate                         all but ``/health``
429         too many requests                                   all but ``/health``
503         the database is unreachable (with Retry-After)      all
==========  ==================================================  ===========================
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = "Error"

_DESCRIPTIONS = {
    "400": "The body is not valid JSON, or a parameter is out of range",
    "401": "Not authenticated: no or a bad token, signature or password",
    "403": "Authenticated, but not allowed to do this",
    "404": "Not found (another tenant's data is never shown)",
    "409": "Conflicts with what exists (a duplicate, or an Idempotency-Key reused)",
    "413": "The body is too large",
    "422": "The input does not validate",
    "429": "Too many requests; retry after Retry-After seconds",
    "503": "A service notiflow depends on is unreachable; retry after Retry-After seconds",
}

_MUTATING = frozenset({"post", "put", "patch", "delete"})
_UNCHECKED = frozenset({"/health", "/metrics"})


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["not_found"]},
                    "message": {"type": "string"},
                    "details": {},
                },
            }
        },
    }


def error_response(description: str) -> dict[str, Any]:
    """A route's own error answer in the shared shape, for its ``responses``::

    @router.post("", responses={502: error_response("The network could not be reached")})
    """
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    return {"description": description, "content": {"application/json": {"schema": reference}}}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the shared error responses to every operation of ``schema`` (in place)."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})[ERROR_SCHEMA] = _error_schema()
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = {"503"}
            if path not in _UNCHECKED:
                codes |= {"401", "403", "404", "422", "429"}
                if "requestBody" in operation or path.startswith("/apps/"):
                    codes |= {"400", "413"}
                if method in _MUTATING:
                    codes.add("409")
            responses = operation["responses"]
            for code in sorted(codes):
                # FastAPI's own 422 describes its default body; notiflow answers in its shape.
                responses[code] = {
                    "description": _DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": reference}},
                }
    return schema
