"""The `millrace` command answers bad input with a message and exit code 2, never a traceback."""

from __future__ import annotations

import pytest

from millrace import Pool, store
from tests.cli_run import millrace

BAD_INPUT = [
    (["enqueue", "send_welcome_email", "--args", '{"user_id": 1}', "--delay", "1e308"], "--delay"),
    (["enqueue", "send_welcome_email", "--args", '{"user_id": 1}', "--delay", "nan"], "--delay"),
    (["enqueue", "send_welcome_email", "--args", '{"user_id": 1}', "--delay", "-5"], "--delay"),
    (["enqueue", "send_password_reset_email", "--args", '{"user_id": 1, "reset_id": "a\\u0000b"}'], "NUL"),
    (["enqueue", "send_password_reset_email", "--args", '{"user_id": 1, "reset_id": "\\ud800"}'], "surrogate"),
    (["enqueue", "send_welcome_email", "--args", '{"user_id": "seven"}'], "user_id"),
    (["enqueue", "send_welcome_email", "--args", "[" * 100_000], "not JSON"),
    (["enqueue", "send_welcome_email", "--args", "{not json"], "not JSON"),
    (["enqueue", "no_such_job"], "no job named"),
    (["enqueue", "send_welcome_email", "--args", '{"user_id": 1}', "--priority", "-5"], "priority"),
    (["enqueue", "send_welcome_email", "--args", '{"user_id": 1}', "--priority", "high"], "--priority"),
    (["jobs", "list", "--limit", "-1"], "--limit"),
    (["jobs", "list", "--limit", "99999999999999999999"], "--limit"),
    (["jobs", "list", "--status", "everything"], "--status"),
    (["dead", "list", "--limit", "0"], "--limit"),
    (["dead", "retry"], "name job ids"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a)[:60] for a, _ in BAD_INPUT])
async def test_bad_input_gets_a_message_and_exit_code_2(
    database_url: str, redis_url: str, pool: Pool, argv: list[str], message: str
) -> None:
    code, out, err = await millrace(database_url, redis_url, *argv)
    assert code == 2, (out, err)
    assert message in err
    assert "Traceback" not in err
    assert await store.jobs.list_jobs(pool) == []


async def test_undecodable_bytes_in_an_argument_are_refused(database_url: str, redis_url: str) -> None:
    """argv that is not UTF-8 reaches Python as lone surrogates, which PostgreSQL cannot take."""
    code, _, err = await millrace(
        database_url, redis_url, "jobs", "show", b"\xff\xfe".decode("utf-8", "surrogateescape")
    )
    assert code == 2
    assert "surrogate" in err


async def test_a_good_enqueue_still_works(database_url: str, redis_url: str, pool: Pool) -> None:
    code, out, _ = await millrace(
        database_url, redis_url, "enqueue", "send_welcome_email", "--args", '{"user_id": 1}', "--priority", "60"
    )
    assert code == 0
    assert "enqueued via redis" in out
    assert len(await store.jobs.list_jobs(pool)) == 1
    assert await pool.fetchval("SELECT priority FROM millrace_jobs") == 60
