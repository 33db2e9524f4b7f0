"""schemathesis fuzzes the real service from its own OpenAPI document: no 5xx, no undocumented answer.

The service runs as a real uvicorn process on the test's own database and Redis; each operation gets a
bounded number of generated requests, valid ones and invalid ones, authenticated as a real user. Half
of them aim at real data, to get past the first refusal into the handlers: the user's own id rather
than a 403, and webhook events signed with the provider's secret rather than a 400.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from scripts.demo_load import wait_until_up
from tests.processes import processes
from tests.servers import free_port
from tests.web.conftest import OPERATOR_HASH, OPERATOR_PASSWORD, WEBHOOK_SECRET
from web.signatures import sign

pytestmark = pytest.mark.e2e
EXAMPLES_PER_MODE = 50
#: every answer documented, of the documented type and shape; invalid input refused; auth enforced
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    token: str


def aim_at_own_data(case: Case[Any], user_id: int) -> None:
    """The caller's own id where the request names a user: a random id only ever earns a 403."""
    if case.path_parameters and "user_id" in case.path_parameters:
        case.path_parameters["user_id"] = user_id
    if isinstance(case.body, dict) and "assignee_id" in case.body:
        case.body["assignee_id"] = user_id


def send_signed_event(case: Case[Any], base_url: str) -> httpx.Response:
    """The generated event as the provider would send it: to a provider we know, signed."""
    assert case.path_parameters is not None
    case.path_parameters["provider"] = "stripe"
    # an invalid case may be raw bytes rather than a JSON value
    body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    signature = sign(body, WEBHOOK_SECRET, int(time.time()))
    headers = {"Content-Type": "application/json", "Stripe-Signature": signature}
    return httpx.post(base_url + case.formatted_path, content=body, headers=headers, timeout=10)


def fuzz_operation(
    operation: Any, mode: GenerationMode, base_url: str, caller: Caller, requests: Counter[str]
) -> str | None:
    """Run one operation's examples in one mode; what failed, or None."""
    headers = {"Authorization": f"Bearer {caller.token}"}

    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode), own=st.booleans())
    def check(case: Case[Any], own: bool) -> None:
        if own and mode.is_positive:  # an invalid case stays as generated: its invalid part may be the id
            aim_at_own_data(case, caller.user_id)
        if own and case.operation.path == "/webhooks/{provider}" and case.body is not NOT_SET:
            response: Any = send_signed_event(case, base_url)
        else:
            response = case.call(base_url=base_url, headers=headers, timeout=10)
        requests[f"{case.operation.label} {mode.value}"] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        check()
    except Unsatisfiable:  # nothing of the operation can be made invalid: /healthz, or a body without a schema
        assert mode.is_negative, operation.label
    # schemathesis reports its findings as a FailureGroup, a BaseExceptionGroup: no Exception catches it
    except (Exception, FailureGroup) as error:  # collect every operation's failure, then report them together
        return f"{operation.label} ({mode.value}): {str(error)[:2000]}"
    return None


def fuzz(schema_document: dict[str, Any], base_url: str, caller: Caller) -> tuple[list[str], Counter[str]]:
    """Run every operation's examples; returns what failed, one line each, and the requests made."""
    schema = schemathesis.openapi.from_dict(schema_document)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the schema describes badly is a failure too
        operations.append(result.ok())
    requests: Counter[str] = Counter()
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (failure := fuzz_operation(operation, mode, base_url, caller, requests)) is not None
    ]
    # every operation was exercised (one without inputs, like /healthz, needs a single request)
    assert {label.rsplit(" ", 1)[0] for label in requests} == {o.label for o in operations}, requests
    return failures, requests


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
        caller = Caller(user_id=user["id"], token=user["api_token"])
        failures, requests = await asyncio.to_thread(fuzz, document, base_url, caller)
        assert failures == [], "\n".join(failures) + "\n" + web.output()[-3000:]
        assert sum(requests.values()) >= 500, requests
