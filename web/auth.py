"""Who is calling: users by their API token, operators by a password whose argon2 hash is in settings.

A user's token is random (32 bytes), shown once at signup and kept only as its SHA-256 hash: a hash of
that much randomness needs no salt or stretching, and a stolen table gives no token. The operator's
password is a person's, so it is kept as an argon2 hash (argon2-cffi) and checked in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from typing import Annotated, Any

import anyio.to_thread
import argon2
from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

import db.users
from millrace.dashboard.auth import Throttle
from settings import Settings
from web.state import state_of

OPERATOR = "operator"
_bearer = HTTPBearer(auto_error=False, description="the API token a signup returns")
_basic = HTTPBasic(
    auto_error=False, description=f"user `{OPERATOR}`, the password whose hash is OPERATOR_PASSWORD_HASH"
)
_hasher = argon2.PasswordHasher()


def new_token() -> tuple[str, bytes]:
    """A token to give the user once, and the hash to keep."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> int:
    """The id of the user whose token came with the request; 401 without a valid one."""
    if credentials is None:
        raise HTTPException(401, "an API token is needed", headers={"WWW-Authenticate": "Bearer"})
    user_id = await db.users.find_user_id_by_token(state_of(request).pool, token_hash(credentials.credentials))
    if user_id is None:
        raise HTTPException(401, "this API token is not valid", headers={"WWW-Authenticate": "Bearer"})
    return user_id


CurrentUser = Annotated[int, Depends(current_user)]


def only_self(caller: int, user_id: int) -> None:
    if caller != user_id:
        raise HTTPException(403, "this is another user's data")


def operator_password_ok(password_hash: str | None, authorization: str | None) -> bool:
    """Whether an `Authorization: Basic` header names the operator with the right password."""
    if password_hash is None or not authorization or not authorization.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    if not secrets.compare_digest(user.encode(), OPERATOR.encode()):
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


async def operator_login_ok(
    password_hash: str | None, authorization: str | None, address: str, tries: Throttle
) -> bool:
    """operator_password_ok off the event loop (argon2 spends tens of milliseconds of CPU by design),
    for at most the dashboard's number of failed tries per address within its window: its login limit
    holds for Basic auth too, or /metrics would be the way round it."""
    if not authorization or not tries.admit(address):
        return False
    ok = await anyio.to_thread.run_sync(operator_password_ok, password_hash, authorization)
    if ok:
        tries.forgive(address)
    return ok


def operator_tries(app: Any) -> Throttle:
    """The app's count of failed operator logins over Basic auth (one per app: tests make many apps)."""
    if not hasattr(app.state, "operator_tries"):
        app.state.operator_tries = Throttle()
    tries: Throttle = app.state.operator_tries
    return tries


async def operator(request: Request, _: Annotated[HTTPBasicCredentials | None, Depends(_basic)]) -> None:
    """401 unless the operator's password came with the request (and one is configured at all)."""
    configured = state_of(request).settings.operator_password_hash
    password_hash = None if configured is None else configured.get_secret_value()
    address = request.client.host if request.client else "?"
    tries = operator_tries(request.app)
    if not await operator_login_ok(password_hash, request.headers.get("authorization"), address, tries):
        raise HTTPException(401, "operator login needed", headers={"WWW-Authenticate": 'Basic realm="operator"'})


class OperatorOnly:
    """An ASGI app (the runtime's status page) behind the operator's login."""

    def __init__(self, app: ASGIApp, settings: Settings, tries: Throttle) -> None:
        self._app = app
        self._tries = tries
        configured = settings.operator_password_hash
        self._hash = None if configured is None else configured.get_secret_value()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
        client = scope.get("client")
        address = client[0] if client else "?"
        if scope["type"] == "http" and not await operator_login_ok(self._hash, authorization, address, self._tries):
            refused = JSONResponse(
                {"detail": "operator login needed"}, 401, headers={"WWW-Authenticate": 'Basic realm="operator"'}
            )
            await refused(scope, receive, send)
            return
        await self._app(scope, receive, send)
