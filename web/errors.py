"""How the service answers what it refuses: short messages, no echo of the input, the same shape always."""

from __future__ import annotations

import math
from typing import Any

import structlog
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from millrace import QueueFull

log = structlog.get_logger(__name__)

_MAX_ERRORS = 10


class Problem(BaseModel):
    """Every 4xx answer: `{"detail": "..."}`."""

    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str


class ValidationProblem(BaseModel):
    """A 422: which fields, and what is wrong with each; never the input itself (it may be a megabyte)."""

    detail: list[FieldProblem]


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the refusals a route really gives."""
    described = {
        400: "the request cannot be read or verified",
        401: "no valid credentials",
        403: "not yours: another user's data, or a link that is not valid",
        404: "no such thing",
        409: "it exists already",
        410: "the link has expired",
        413: "the body is too large",
        415: "not a kind of file this accepts",
    }
    # any route that touches PostgreSQL may find it away: 503 with Retry-After, never a 500
    statuses = (*statuses, 503)
    described[503] = "the database is away for a moment; try again after Retry-After seconds"
    documented: dict[int | str, dict[str, Any]] = {
        status: {"model": Problem, "description": described[status]} for status in statuses
    }
    documented[422] = {"model": ValidationProblem, "description": "a field is missing or invalid"}
    return documented


async def on_validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        FieldProblem(loc=[p if isinstance(p, int) else str(p)[:100] for p in e["loc"]], msg=str(e["msg"])[:200])
        for e in error.errors()[:_MAX_ERRORS]
    ]
    return JSONResponse(ValidationProblem(detail=problems).model_dump(), status_code=422)


#: seconds a client should wait before it tries again while the database is away
RETRY_AFTER_S = 5


async def on_database_away(_request: Request, error: Exception) -> JSONResponse:
    log.warning("request_refused_database_away", error=type(error).__name__)
    return JSONResponse(
        Problem(detail="the database is unavailable; try again shortly").model_dump(),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def on_storage_away(_request: Request, error: Exception) -> JSONResponse:
    log.warning("request_refused_storage_away", error=str(error)[:200])
    return JSONResponse(
        Problem(detail="file storage is unavailable; try again shortly").model_dump(),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def on_queue_full(_request: Request, error: Exception) -> JSONResponse:
    """A queue at its declared max_backlog: the client comes back after Retry-After, nothing was written."""
    assert isinstance(error, QueueFull)
    log.warning("request_refused_queue_full", queue=error.queue, backlog=error.backlog)
    return JSONResponse(
        Problem(detail="too much work is waiting; try again shortly").model_dump(),
        status_code=503,
        headers={"Retry-After": str(math.ceil(error.retry_after_s))},
    )
