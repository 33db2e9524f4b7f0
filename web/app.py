"""The demo service: a signup that creates the user and enqueues the welcome email in one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Literal

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel

import db.billing
import db.users
import millrace
from millrace import (
    OUTAGES,
    TRANSIENT_ERRORS,
    UNREACHABLE,
    AlreadyExists,
    JobClient,
    NotFound,
    QueueFull,
    configure_logging,
)
from millrace.storage import StorageUnavailable, open_storage
from producers.emails import enqueue_admin_email, enqueue_password_reset_email, enqueue_welcome_email
from producers.integrations import enqueue_crm_sync
from settings import Settings
from web import documents, files, imports, notifications, quotations, reports, webhooks
from web.auth import CurrentUser, OperatorOnly, new_token, only_self, operator, operator_tries
from web.errors import Problem, answers, on_database_away, on_queue_full, on_storage_away, on_validation_error
from web.fields import Email, Line, PathId, only_query
from web.limits import BodySizeLimit
from web.operations import mount_operations
from web.state import AppState, state_of

log = structlog.get_logger(__name__)

TRIAL = timedelta(days=14)
# what any JSON body can earn besides a 422: 413 past the size limit, and 400 from FastAPI itself for
# JSON it cannot read (nesting past Python's recursion limit, an integer of more than 4300 digits)
_BODY = (400, 413)


class SignupRequest(BaseModel):
    email: Email
    name: Line


class SignupResponse(BaseModel):
    id: int
    #: shown once: the bearer token this user's own endpoints ask for
    api_token: str
    welcome_job_id: str


class Health(BaseModel):
    status: Literal["ok"]


class UserResponse(BaseModel):
    id: int
    email: str
    name: str


async def _open_pool(settings: Settings) -> millrace.Pool:
    """The pool, opened whole; if PostgreSQL is away or full now, opened empty instead: the service starts
    and answers 503 (/healthz says why) until PostgreSQL takes connections, rather than crash-loop."""
    size = settings.database_pool_max_size
    for min_size in (size, 0):
        try:
            return await millrace.create_pool(
                settings.database_dsn(),
                min_size=min_size,
                max_size=size,
                statement_timeout_s=settings.database_statement_timeout_s,
            )
        except UNREACHABLE as error:
            log.warning("database_pool_opened_empty", error=repr(error))
    raise AssertionError("a pool of min_size 0 opens without connecting")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one pool and one JobClient for the process's lifetime; the client borrows the app's pool
        # opened whole at start-up: the first burst of requests must not wait for connections to be made
        pool = await _open_pool(settings)
        try:
            async with (
                JobClient.open(redis_url=settings.redis_dsn(), pool=pool) as jobs,
                open_storage(settings.storage_location()) as storage,
            ):
                app.state.millrace = AppState(
                    settings=settings, pool=pool, jobs=jobs, storage=storage, links=settings.download_links()
                )
                yield
        finally:
            await pool.close()

    # the docs and the schema are the operator's, like the status page: mounted below behind a login
    app = FastAPI(title="Millrace demo", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    for outage in TRANSIENT_ERRORS:  # PostgreSQL away: 503 with Retry-After, the request can be repeated
        if issubclass(outage, Exception):
            app.add_exception_handler(outage, on_database_away)
    app.add_exception_handler(StorageUnavailable, on_storage_away)
    app.add_exception_handler(QueueFull, on_queue_full)
    app.add_middleware(
        BodySizeLimit,
        default_bytes=settings.web_max_body_bytes,
        by_prefix={"/webhooks/": settings.webhook_max_body_bytes},
        streamed={"/imports": settings.import_max_bytes, "/documents": settings.document_max_bytes},
    )
    app.add_api_route("/users", signup, methods=["POST"], status_code=201, responses=answers(409, *_BODY))
    app.add_api_route("/users/{user_id}", get_user, methods=["GET"], responses=answers(401, 403, 404))
    app.add_api_route(
        "/password-resets", request_password_reset, methods=["POST"], status_code=202, responses=answers(*_BODY)
    )
    app.add_api_route(
        "/healthz",
        healthz,
        methods=["GET"],
        responses={
            200: {"model": Health, "description": "PostgreSQL and Redis answer"},
            503: {"model": Problem, "description": "PostgreSQL or Redis does not answer"},
        },
    )
    app.add_api_route(
        "/webhooks/{provider}",
        webhooks.receive_webhook,
        methods=["POST"],
        responses=answers(400, 404, 413),
        openapi_extra=webhooks.OPENAPI_BODY,
    )
    app.add_api_route(
        "/users/{user_id}/preferences",
        notifications.set_preferences,
        methods=["PUT"],
        responses=answers(401, 403, 404, *_BODY),
    )
    app.add_api_route(
        "/users/{user_id}/notifications",
        notifications.list_notifications,
        methods=["GET"],
        responses=answers(401, 403),
    )
    app.add_api_route(
        "/tasks", notifications.create_task, methods=["POST"], status_code=201, responses=answers(401, 403, 404, *_BODY)
    )
    app.add_api_route(
        "/imports",
        imports.create_import,
        methods=["POST"],
        dependencies=[only_query("filename")],
        status_code=202,
        responses=answers(400, 401, 413, 415),
        openapi_extra=imports.OPENAPI_UPLOAD,
    )
    app.add_api_route("/imports/{import_id}", imports.get_import, methods=["GET"], responses=answers(401, 404))
    app.add_api_route(
        "/quotations", quotations.create_quotation, methods=["POST"], status_code=202, responses=answers(401, *_BODY)
    )
    app.add_api_route(
        "/quotations/{quotation_id}", quotations.get_quotation, methods=["GET"], responses=answers(401, 404)
    )
    app.add_api_route(
        "/quotations/{quotation_id}/retry",
        quotations.retry_quotation,
        methods=["POST"],
        status_code=202,
        responses=answers(401, 404, 409),
    )
    app.add_api_route(
        "/documents",
        documents.upload_document,
        methods=["POST"],
        dependencies=[only_query("filename")],
        status_code=202,
        responses=answers(400, 401, 413, 415),
        openapi_extra=documents.OPENAPI_UPLOAD,
    )
    app.add_api_route("/documents/{document_id}", documents.get_document, methods=["GET"], responses=answers(401, 404))
    app.add_api_route(
        "/ai/usage", documents.ai_usage, methods=["GET"], responses=answers(401), dependencies=[only_query("days")]
    )
    app.add_api_route(
        "/reports", reports.create_report, methods=["POST"], status_code=202, responses=answers(401, *_BODY)
    )
    app.add_api_route("/reports/{report_id}", reports.get_report, methods=["GET"], responses=answers(401, 404))
    app.add_api_route(
        "/files/{key:path}",
        files.download,
        methods=["GET"],
        dependencies=[only_query("name", "expires", "signature")],
        response_class=StreamingResponse,
        responses={**answers(403, 404, 410), 200: {"content": {"application/octet-stream": {}}}},
    )
    operator_only = [Depends(operator)]
    app.add_api_route(
        "/openapi.json", openapi_document, methods=["GET"], include_in_schema=False, dependencies=operator_only
    )
    app.add_api_route("/docs", api_docs, methods=["GET"], include_in_schema=False, dependencies=operator_only)
    status_page = millrace.status.router(lambda request: state_of(request).pool)
    app.mount("/status", OperatorOnly(status_page, settings, operator_tries(app)))
    mount_operations(app, settings)
    return app


async def signup(body: SignupRequest, request: Request) -> SignupResponse:
    state = state_of(request)
    token, token_hash = new_token()
    async with state.pool.acquire() as conn, conn.transaction():
        try:
            user = await db.users.insert_user(conn, email=body.email, name=body.name)
        except AlreadyExists:
            raise HTTPException(409, "this email is already registered") from None
        await db.users.insert_api_token(conn, user_id=user.id, token_hash=token_hash)
        # everything slow or fallible happens in the background, and only if this transaction commits
        welcome = await enqueue_welcome_email(state.jobs, user_id=user.id, conn=conn)
        await enqueue_admin_email(state.jobs, kind="new_user", user_id=user.id, event_key=str(user.id), conn=conn)
        if state.settings.crm_api_url:  # an integration this deployment does not have is not a failure
            await enqueue_crm_sync(state.jobs, user_id=user.id, conn=conn)
        await db.billing.start_trial(conn, user_id=user.id, trial_ends_at=user.created_at + TRIAL, now=user.created_at)
    return SignupResponse(id=user.id, api_token=token, welcome_job_id=welcome.id)


class PasswordResetRequest(BaseModel):
    email: Email


async def request_password_reset(body: PasswordResetRequest, request: Request) -> dict[str, str]:
    """The same answer whether or not the address has an account: no way to probe for users."""
    state = state_of(request)
    async with state.pool.acquire() as conn, conn.transaction():
        user = await db.users.find_user_by_email(conn, body.email)
        if user is not None:
            reset_id = await db.users.insert_password_reset(conn, user.id)
            await enqueue_password_reset_email(state.jobs, user_id=user.id, reset_id=reset_id, conn=conn)
    return {"status": "if this address has an account, a reset email is on its way"}


async def get_user(user_id: PathId, caller: CurrentUser, request: Request) -> UserResponse:
    only_self(caller, user_id)
    async with state_of(request).pool.acquire() as conn:
        try:
            user = await db.users.get_user(conn, user_id)
        except NotFound:
            raise HTTPException(404, "no such user") from None
    return UserResponse(id=user.id, email=user.email, name=user.name)


async def healthz(request: Request) -> JSONResponse:
    """200 when PostgreSQL and Redis answer; 503 otherwise, for the load balancer to route around."""
    state = state_of(request)
    try:
        async with state.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        await state.jobs.redis.ping()
    except OUTAGES as error:
        return JSONResponse({"detail": f"unhealthy: {type(error).__name__}"}, 503, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ok"})


async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


async def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Millrace demo API")


def app_from_environment() -> FastAPI:
    """`uvicorn --factory web.app:app_from_environment`: the web process's entry point."""
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    if settings.operator_password_hash is None and settings.environment != "development":
        raise SystemExit(
            "OPERATOR_PASSWORD_HASH is not set: outside development the web app does not start without the "
            "operator's login (ENVIRONMENT=development runs it with the dashboard closed)"
        )
    if settings.dashboard_session_secret is None and settings.environment != "development":
        raise SystemExit(
            "DASHBOARD_SESSION_SECRET is not set: outside development the web app does not start without the "
            "secret that signs the dashboard's sessions (32 characters or more, the same on every web process)"
        )
    return create_app(settings)
