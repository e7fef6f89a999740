"""The OpenAPI document of a running server: the push body is the Batch schema, every
operation documents its problem responses (application/problem+json, by status, with the
problem types), and schemathesis, generating a bounded number of requests per operation
from it (valid and invalid), gets no server error and only documented statuses and media
types."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from schemathesis import checks

from fynlo_sync.errors import FynloError
from server import admin
from server.openapi import PROBLEM_JSON, problems_of
from server.testing import embedded_settings, run_in_thread

EXAMPLES = int(os.environ.get("FYNLO_SCHEMATHESIS_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("openapi")
    config = embedded_settings(folder)
    with run_in_thread(config) as url:
        tenant = admin.create_tenant(config, "fuzzed")
        code = admin.enroll_device(config, tenant).enrollment_code
        tokens = httpx.post(url + "/v1/auth/device", json={"enrollment_code": code}).json()
        yield url, {"Authorization": f"Bearer {tokens['access_token']}"}


def _document(url: str) -> dict[str, Any]:
    got = httpx.get(url + "/schema/openapi.json", timeout=10)
    assert got.status_code == 200
    doc: dict[str, Any] = got.json()
    return doc


def test_the_push_body_and_every_problem_are_documented(
    served: tuple[str, dict[str, str]],
) -> None:
    url, _ = served
    doc = _document(url)
    validate(doc)  # OpenAPI 3.1, by openapi-spec-validator
    schemas = doc["components"]["schemas"]
    assert {"Batch", "Op", "Problem"} <= set(schemas)
    push = doc["paths"]["/v1/sync/push"]["post"]
    assert push["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Batch"
    }
    assert "ops" in schemas["Batch"]["properties"] and "checksum" in schemas["Batch"]["required"]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if path in ("/metrics", "/health/live") or path.startswith("/schema"):
                continue
            for status, types in problems_of(method, path, operation).items():
                response = operation["responses"][str(status)]
                if (path, status) == ("/health/ready", 503):
                    continue
                assert PROBLEM_JSON in response["content"], (method, path, status)
                for problem in types:
                    assert f"problems/{problem}`" in response["description"], (path, problem)
    pushed = doc["paths"]["/v1/sync/push"]["post"]["responses"]
    for status, problem in [(409, "seq-gap"), (422, "checksum-mismatch"), (403, "node-mismatch")]:
        assert f"problems/{problem}`" in pushed[str(status)]["description"]


def test_every_problem_type_the_code_defines_is_documented_somewhere(
    served: tuple[str, dict[str, str]],
) -> None:
    """Each FynloError a sync route can raise (4xx from the engine, 5xx from stores) has its
    type in the document."""
    url, _ = served
    text = httpx.get(url + "/schema/openapi.json").text
    stack: list[type[FynloError]] = [FynloError]
    codes: set[str] = set()
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__ == "fynlo_sync.errors":
            codes.add(cls.code)
    # Raised only locally (a terminal's own checks, the CLI), never answered over HTTP:
    local = {"error", "bad-peer-input", "clock", "missing-dependency", "transport-error"}
    local |= {"unknown-collection", "unknown-command", "illegal-transition", "settings"}
    missing = {c for c in codes - local if f"problems/{c}`" not in text}
    assert not missing, missing


def test_schemathesis_finds_no_server_error(served: tuple[str, dict[str, str]]) -> None:
    url, auth = served
    schema = schemathesis.openapi.from_url(url + "/schema/openapi.json")
    used = (
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
    )
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err would raise here
        if operation.path in ("/metrics",) or operation.path.startswith("/schema"):
            continue

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call(base_url=url, headers=auth, timeout=10)
            case.validate_response(response, checks=list(used))

        run()
        ran += 1
    assert ran >= 8


def test_a_document_is_checked(tmp_path: Path) -> None:
    """The completion adds only what a route can answer, and the validator can fail."""
    from server.openapi import complete

    doc = complete(
        {
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/v1/sync/pull": {"get": {"responses": {"200": {"description": "ok"}}}}},
        }
    )
    responses = doc["paths"]["/v1/sync/pull"]["get"]["responses"]
    assert "401" in responses and "409" not in responses
    validate(doc)
    scheme = {"type": "http", "scheme": "Bearer", "name": "Authorization"}
    with pytest.raises(OpenAPIValidationError):
        validate({**doc, "components": {**doc["components"], "securitySchemes": {"B": scheme}}})
