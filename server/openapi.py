"""The OpenAPI document, completed where Litestar cannot see: the push body (read raw, for
the checksum, so no ``data`` parameter describes it) is the :class:`~fynlo_sync.ops.Batch`
schema (with :class:`~fynlo_sync.ops.Op`), and every operation lists the problem responses
it can give (``application/problem+json``, by status, with the problem types of each).

Litestar renders the document through its render plugins; :class:`CompletedJson` is the
JSON one with :func:`complete` applied, once, to the schema Litestar built.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

from fynlo_sync.ops import Batch

__all__ = ["PROBLEM_JSON", "CompletedJson", "complete", "problems_of"]

PROBLEM_JSON = "application/problem+json"

#: Every operation: the server failed (or its database did).
COMMON: dict[int, tuple[str, ...]] = {
    500: ("internal-error", "store-error"),
    503: ("store-busy", "store-unavailable"),
    507: ("store-full",),
}
#: Operations that need an access token.
AUTHED: dict[int, tuple[str, ...]] = {401: ("unauthenticated",)}
#: Operations with a body or query parameters (Litestar's own 400s become problems too).
INPUT: dict[int, tuple[str, ...]] = {400: ("http-error",), 422: ("malformed",)}
#: Operations with a body.
BODY: dict[int, tuple[str, ...]] = {413: ("batch-too-large",), 422: ("limit-exceeded",)}
#: Every /v1 operation is rate limited (per device and tenant, or per address on /v1/auth).
RATED: dict[int, tuple[str, ...]] = {429: ("rate-limited",)}
#: What each operation can refuse besides, by (method, path).
SPECIFIC: dict[tuple[str, str], dict[int, tuple[str, ...]]] = {
    ("post", "/v1/sync/push"): {
        400: ("protocol-version",),
        403: ("node-mismatch",),
        409: ("seq-gap", "seq-reuse"),
        422: ("invalid-value", "checksum-mismatch", "clock-ahead"),
    },
    ("post", "/v1/auth/device"): {401: ("unauthenticated",)},
    ("get", "/v1/effects"): {403: ("not-permitted",)},
    ("post", "/v1/auth/refresh"): {401: ("unauthenticated",)},
    ("post", "/v1/conflicts/{conflict_id}/resolve"): {
        400: ("invalid-request",),
        403: ("forbidden",),
        404: ("conflict-not-found", "not-found"),
        422: ("invalid-value", "rejected"),
    },
    # the time clock plugin's routes (server/timeclock.py, protocol 20.8)
    ("get", "/v1/plugins/timeclock/approvals"): {403: ("forbidden",)},
    ("post", "/v1/plugins/timeclock/timecards/{timecard_id}/adjustments"): {
        403: ("forbidden",),
        404: ("record-not-found",),
        409: ("duplicate-adjustment", "illegal-transition"),
        422: ("invalid-argument", "outside-week"),
    },
    (
        "post",
        "/v1/plugins/timeclock/timecards/{timecard_id}/adjustments/{adjustment_id}/decision",
    ): {
        403: ("forbidden",),
        404: ("record-not-found", "adjustment-not-found"),
        409: ("illegal-transition", "adjustment-stale"),
        422: ("invalid-argument",),
    },
    ("post", "/v1/plugins/timeclock/timecards/{timecard_id}/days/{day}/decision"): {
        403: ("forbidden",),
        404: ("record-not-found",),
        409: ("illegal-transition", "nothing-to-approve"),
        422: ("invalid-argument",),
    },
}

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; extra members name the problem's specifics "
    "(``expected`` for a seq gap, ``max_bytes``, ``errors``, ...).",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": "the problem's type URI"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def problems_of(method: str, path: str, operation: dict[str, Any]) -> dict[int, tuple[str, ...]]:
    """The problem types each status of an operation can carry."""
    table: dict[int, set[str]] = {}

    def add(part: dict[int, tuple[str, ...]]) -> None:
        for status, types in part.items():
            table.setdefault(status, set()).update(types)

    add(COMMON)
    if path.startswith("/v1/") and not path.startswith("/v1/auth/"):
        add(AUTHED)
    if path.startswith("/v1/"):
        add(RATED)
    if operation.get("parameters") or method in ("post", "put", "patch"):
        add(INPUT)
    if method in ("post", "put", "patch"):
        add(BODY)
    add(SPECIFIC.get((method, path), {}))
    return {status: tuple(sorted(types)) for status, types in sorted(table.items())}


def _batch_components() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [Batch], ref_template="#/components/schemas/{name}"
    )
    return components


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of Litestar's document with the push body and the problem responses."""
    doc = copy.deepcopy(schema)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, part in _batch_components().items():
        schemas.setdefault(name, part)
    schemas["Problem"] = _PROBLEM_SCHEMA
    for scheme in doc["components"].get("securitySchemes", {}).values():
        if scheme.get("type") == "http":
            scheme.pop("name", None)  # Litestar's JWT scheme sets it; OpenAPI forbids it there
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if (method, path) == ("post", "/v1/sync/push"):
                operation["requestBody"] = {
                    "required": True,
                    "description": "A Batch (docs/protocol.md): its checksum is verified over "
                    "the ops as sent, before anything is applied.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}
                    },
                }
            if path in ("/metrics", "/health/live") or path.startswith("/schema"):
                continue
            responses = operation["responses"]
            for status, types in problems_of(method, path, operation).items():
                responses[str(status)] = {
                    "description": "Problem types: "
                    + ", ".join(f"`https://fynlo.dev/problems/{t}`" for t in types),
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
    ready = doc.get("paths", {}).get("/health/ready", {}).get("get")
    if ready is not None:
        ready["responses"]["503"] = {
            "description": "the database (or Redis) does not answer",
            "content": copy.deepcopy(ready["responses"]["200"].get("content", {})),
        }
    return doc


class CompletedJson(JsonRenderPlugin):
    """``/schema/openapi.json``: Litestar's document, completed by :func:`complete`."""

    def __init__(self) -> None:
        super().__init__()
        self._done: tuple[int, bytes] | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._done is None or self._done[0] != id(openapi_schema):
            self._done = (id(openapi_schema), super().render(request, complete(openapi_schema)))
        return self._done[1]
