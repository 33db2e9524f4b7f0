"""What a dashboard needs to know: who may log in, what to hide, and the application's declarations."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from millrace.client import JobClient
from millrace.declare import JobRef
from millrace.queues import Queue

Role = Literal["admin", "viewer"]

#: argument fields never shown, whatever the application adds: matched by name, case-insensitively,
#: at any depth, and as part of a name ("stripe_api_key" is hidden by "api_key")
DEFAULT_REDACTED = (
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "card_number",
    "cvc",
    "iban",
    "ssn",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Login:
    """A person who may log in: a name, the argon2 hash of their password (never the password), a role.
    A viewer sees everything an admin sees and can do nothing."""

    name: str
    password_hash: str = field(repr=False)
    role: Role = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class DashboardConfig:
    #: the JobClient of the app the dashboard is mounted in (its pool and Redis), asked for per request:
    #: an app usually opens it in its lifespan, after the dashboard is mounted
    jobs: Callable[[], JobClient]
    logins: Sequence[Login]
    #: signs the session cookie; at least 32 characters, the same on every web process
    session_secret: str = field(repr=False)
    queues: Sequence[Queue] = ()
    #: job references by name: edited arguments of a retried job are checked against them
    refs: Mapping[str, JobRef[Any]] = field(default_factory=dict)
    redacted: Sequence[str] = DEFAULT_REDACTED
    #: development allows the session cookie over plain HTTP; elsewhere it is Secure
    development: bool = False
    #: a session lasts this long after its login
    session_max_age_s: int = 8 * 3600

    def __post_init__(self) -> None:
        if not self.logins:
            raise ValueError("the dashboard needs at least one login (a name and an argon2 password hash)")
        if len(self.session_secret) < 32:
            raise ValueError("the dashboard's session secret must be at least 32 characters")
        for login in self.logins:
            if not login.password_hash.startswith("$argon2"):
                raise ValueError(f"login {login.name!r}: the password must be given as an argon2 hash")
