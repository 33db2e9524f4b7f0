"""Logins, sessions, roles and CSRF for the dashboard.

A session is a signed cookie (Starlette's SessionMiddleware, itsdangerous) holding the login's name,
role and a CSRF token; it is HttpOnly, SameSite=Strict, Secure outside development, and scoped to the
dashboard's path. Every POST must carry the session's CSRF token (a form field or the X-CSRF-Token
header, which htmx sends); a viewer's POST is refused whatever it carries. Passwords are checked against
argon2 hashes off the event loop, and repeated failures from one address are slowed down.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque

import anyio.to_thread
import argon2
from starlette.requests import Request

from millrace.dashboard.config import Login, Role

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: failed logins from one address within the window, past which it is refused for a while
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0

_hasher = argon2.PasswordHasher()
#: a hash of a random password, checked when the name is unknown, so that the answer takes as long
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class Throttle:
    """Failed logins per client address, in this process (a login is rare; a guess is not).

    A try counts as failed from the moment it starts, and is forgiven when its password is right: a
    burst of guesses sent at once cannot all slip in while the first ones are still being checked.
    """

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def admit(self, address: str) -> bool:
        """Whether a login try from `address` may be checked now; if so, it counts until forgiven."""
        now = time.monotonic()
        failures = self._failures.get(address)
        if failures is not None:
            while failures and now - failures[0] > FAILURE_WINDOW_S:
                failures.popleft()
            if len(failures) >= MAX_FAILURES:
                return False
        else:
            if len(self._failures) >= 10_000:  # addresses seen once do not pile up for ever
                self._forget_stale(now)
            failures = self._failures.setdefault(address, deque(maxlen=MAX_FAILURES))
        failures.append(now)
        return True

    def forgive(self, address: str) -> None:
        """The try admitted last from `address` had the right password: it is not a failure."""
        failures = self._failures.get(address)
        if failures:
            failures.pop()

    def _forget_stale(self, now: float) -> None:
        self._failures = {a: f for a, f in self._failures.items() if f and now - f[-1] <= FAILURE_WINDOW_S}


def check_password(logins: list[Login] | tuple[Login, ...], name: str, password: str) -> Login | None:
    """The login `name` with `password`, or None; runs argon2 even for an unknown name."""
    found = next((login for login in logins if secrets.compare_digest(login.name.encode(), name.encode())), None)
    ok: bool
    try:
        ok = _hasher.verify(found.password_hash if found else _DUMMY_HASH, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        ok = False
    return found if ok and found is not None else None


async def check_password_off_loop(logins: list[Login] | tuple[Login, ...], name: str, password: str) -> Login | None:
    return await anyio.to_thread.run_sync(check_password, logins, name, password)


def start_session(request: Request, login: Login) -> None:
    request.session.clear()
    request.session.update(
        {"user": login.name, "role": login.role, "v": _version(login), CSRF_FIELD: secrets.token_urlsafe(32)}
    )


def current_user(request: Request, logins: list[Login] | tuple[Login, ...]) -> tuple[str, Role] | None:
    """The session's login, if it is still one of the configured logins, with the same role and password."""
    name, role, version = (request.session.get(key) for key in ("user", "role", "v"))
    if not isinstance(name, str) or role not in ("admin", "viewer") or not isinstance(version, str):
        return None
    if not any(login.name == name and login.role == role and _version(login) == version for login in logins):
        return None  # removed, demoted or given a new password since: the session ends
    return name, role


def _version(login: Login) -> str:
    """Which password the session was opened with, without saying anything about it."""
    return hashlib.sha256(b"millrace-session-version:" + login.password_hash.encode()).hexdigest()[:16]


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF_FIELD)
    return token if isinstance(token, str) else ""


def csrf_ok(request: Request, sent: str | None) -> bool:
    expected = csrf_token(request)
    return bool(expected) and sent is not None and secrets.compare_digest(expected.encode(), sent.encode())
