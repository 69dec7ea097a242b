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


PATHS_WITH_SEVERAL_METHODS = [
    (path, sorted(m.upper() for m in item if m in METHODS))
    for path, item in CONTRACT["paths"].items()
    if len([m for m in item if m in METHODS]) > 1
]


@pytest.mark.parametrize(("path", "documented"), PATHS_WITH_SEVERAL_METHODS)
async def test_405_allow_lists_every_method_of_the_path(
    client: httpx.AsyncClient, app: FastAPI, path: str, documented: list[str]
) -> None:
    concrete = path.replace("{code}", "hct-tw").replace("{request_id}", "0")
    response = await client.request("PUT", concrete, headers=staff(app, "privacy_officer"))
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert set(documented) <= allowed


async def test_an_unreadable_body_is_a_documented_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/verifications",
        content=b"\xff\xfe{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert str(response.status_code) in CONTRACT["paths"]["/v1/verifications"]["post"]["responses"]
    assert response.headers["content-type"].startswith("application/problem+json")
