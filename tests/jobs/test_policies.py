"""Every application job gives up at once on the data's errors and retries only what can change."""

from __future__ import annotations

import httpx
import jinja2
import pydantic
import pytest

from jobs import worker
from jobs.policies import DATA_ERRORS, retrying
from jobs.providers import ProviderUnavailable
from jobs.ssrf import UnsafeUrl
from millrace import GiveUp, InvalidJobArguments, NotFound, RetryAfter, RetryPolicy, collect, fixed
from millrace.retry import Die, Retry

#: the runtime's own jobs, with the runtime's own policy
RUNTIME_JOBS = {"prune_job_records", "prune_job_records_nightly"}


def application_policies() -> dict[str, RetryPolicy]:
    jobs, crons = collect(worker.JOB_MODULES)
    policies = {j.name: j.retry for j in jobs} | {c.name: c.retry for c in crons}
    return {name: policy for name, policy in policies.items() if name not in RUNTIME_JOBS}


@pytest.mark.parametrize("name", sorted(application_policies()))
def test_every_job_gives_up_on_the_data_errors(name: str) -> None:
    assert set(DATA_ERRORS) <= set(application_policies()[name].give_up_on)


def a_validation_error() -> pydantic.ValidationError:
    try:
        pydantic.TypeAdapter(int).validate_python("x")
    except pydantic.ValidationError as error:
        return error
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "error",
    [
        NotFound("user", 7),
        a_validation_error(),
        InvalidJobArguments("send_admin_email", ["event_key: too long"]),
        jinja2.UndefinedError("'user' is undefined"),
        GiveUp("the user removed their Slack webhook"),
        UnsafeUrl("'hooks.example' resolves to 10.0.0.8, which is not a public address"),
    ],
    ids=type,
)
def test_an_error_of_the_data_gives_up_at_first_attempt(error: Exception) -> None:
    assert retrying(6, fixed(5)).decide(error, 1) == Die(reason="give_up")


@pytest.mark.parametrize(
    "error",
    [
        ProviderUnavailable("Slack", 503, "busy"),
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("resolving took too long"),
        httpx.ReadTimeout("no answer"),
        RetryAfter(30, "Slack rate-limited us"),
    ],
    ids=type,
)
def test_what_can_change_is_retried(error: Exception) -> None:
    assert isinstance(retrying(6, fixed(5)).decide(error, 1), Retry)
