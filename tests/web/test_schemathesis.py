"""schemathesis fuzzes the real service from its own OpenAPI document: no 5xx, no undocumented answer.

The service runs as a real uvicorn process on the test's own database and Redis; each operation gets a
bounded number of generated requests, authenticated as a real user.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scripts.demo_load import wait_until_up
from tests.processes import processes
from tests.servers import free_port
from tests.web.conftest import OPERATOR_HASH, OPERATOR_PASSWORD, WEBHOOK_SECRET

pytestmark = pytest.mark.e2e
EXAMPLES_PER_OPERATION = 100
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def fuzz(schema_document: dict[str, Any], base_url: str, token: str) -> list[str]:
    """Run every operation's examples; returns what failed, one line each."""
    schema = schemathesis.openapi.from_dict(schema_document)
    failures: list[str] = []
    requests: Counter[str] = Counter()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the schema describes badly is a failure too
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            requests[case.operation.label] += 1
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Exception as error:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {str(error)[:2000]}")
    # every operation was exercised (one without inputs, like /healthz, needs a single request)
    assert len(requests) == len(list(schema.get_all_operations())), requests
    assert sum(requests.values()) >= 500, requests
    return failures


async def test_the_service_answers_every_generated_request_as_documented(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "OPERATOR_PASSWORD_HASH": OPERATOR_HASH,
        "WEBHOOK_SECRETS": json.dumps({"stripe": [WEBHOOK_SECRET]}),
        "LOG_LEVEL": "WARNING",
    }
    async with processes(database_url, redis_url, tmp_path) as start:
        web = start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(port), **env)
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            await wait_until_up(http, timeout_s=30)
            user = (await http.post("/users", json={"email": "fuzz@example.com", "name": "Fuzz"})).json()
            document = (await http.get("/openapi.json", auth=("operator", OPERATOR_PASSWORD))).json()
        failures = await asyncio.to_thread(fuzz, document, base_url, user["api_token"])
        assert failures == [], "\n".join(failures) + "\n" + web.output()[-3000:]
