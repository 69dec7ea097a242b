"""openapi.yaml says what the service does: statuses, problem bodies, Allow on 405.

The contract fuzz (``tests/fuzz/contract.py``, a step of ``.ci/run``) probes the same at random;
these are the rules it found broken, checked on every operation of the published file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from tests.support.lifecycle import staff

CONTRACT = yaml.safe_load((Path(__file__).resolve().parents[1] / "openapi.yaml").read_text())
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in CONTRACT["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


@pytest.mark.parametrize(("path", "method", "operation"), operations())
def test_an_operation_with_a_body_documents_unreadable_too_large_and_invalid(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    if "requestBody" not in operation:
        return
    assert {"400", "413", "422"} <= set(operation["responses"]), f"{method.upper()} {path}"


@pytest.mark.parametrize(("path", "method", "operation"), operations())
def test_an_operation_behind_a_token_documents_401(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    security = operation.get("security") or []
    if not security or {} in security:  # none, or optional (anonymous allowed): never a 401
        return
    assert "401" in operation["responses"], f"{method.upper()} {path}"


@pytest.mark.parametrize(("path", "method", "operation"), operations())
def test_every_documented_error_is_problem_json(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    for status, response in operation["responses"].items():
        if status.startswith(("4", "5")) and "content" in response:
            assert "application/problem+json" in response["content"], (method, path, status)


ID = "3f1c2a9e-4b7d-4e0a-9c61-2d8f5e7a1b04"
PATH_METHODS = [
    (path, {m.upper() for m in item if m in METHODS}) for path, item in CONTRACT["paths"].items()
]


@pytest.mark.parametrize(("path", "documented"), PATH_METHODS)
async def test_405_allow_names_exactly_the_documented_methods_of_the_path(
    client: httpx.AsyncClient, app: FastAPI, path: str, documented: set[str]
) -> None:
    # A literal path beside a templated one (/staff/requests/bulk, POST only, beside
    # /staff/requests/{request_id}, GET) once advertised the template's GET too.
    concrete = path.replace("{code}", "hct-tw")
    for name in ("request_id", "delivery_id", "objection_id", "verification_id"):
        concrete = concrete.replace("{" + name + "}", ID)
    unused = "PUT" if "PUT" not in documented else "DELETE"
    response = await client.request(unused, concrete, headers=staff(app, "privacy_officer"))
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    # HEAD comes with every GET (Starlette serves it); the contract leaves it implied.
    assert allowed - {"HEAD"} == documented, (path, allowed)


async def test_an_unreadable_body_is_a_documented_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/verifications",
        content=b"\xff\xfe{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert str(response.status_code) in CONTRACT["paths"]["/v1/verifications"]["post"]["responses"]
    assert response.headers["content-type"].startswith("application/problem+json")
