"""The few exceptions Millrace raises or understands, each carrying its data as attributes."""

from __future__ import annotations

from redis.exceptions import ResponseError


class MillraceError(Exception):
    """Base of Millrace's own errors."""


class NotFound(MillraceError, LookupError):
    """A record that must exist does not: permanent for the job that looked for it."""

    def __init__(self, what: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key!r} not found")


class AlreadyExists(MillraceError):
    def __init__(self, what: str, constraint: str | None) -> None:
        self.what = what
        self.constraint = constraint
        super().__init__(f"{what} already exists ({constraint})")


class InvalidJobArguments(MillraceError):
    """A job's arguments do not match its declared model; raised by producers, at enqueue and in the worker."""

    def __init__(self, function: str, errors: list[str]) -> None:
        #: the job's name, or the argument model's where no job is known yet
        self.function = function
        self.errors = errors
        super().__init__(f"invalid arguments for {function!r}: " + "; ".join(errors))


class UnknownJob(MillraceError):
    def __init__(self, function: str) -> None:
        self.function = function
        super().__init__(f"no job named {function!r} is declared")


class CorruptPayload(MillraceError):
    """What a worker found in Redis could not be read as a Millrace job."""

    def __init__(self, reason: str, raw: bytes) -> None:
        self.reason = reason
        self.raw = raw
        preview = raw[:200].decode("utf-8", "backslashreplace")
        super().__init__(f"corrupt job payload ({reason}): {preview!r}")


class JobTimedOut(MillraceError):
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(f"job exceeded its timeout of {timeout_s:g}s")


class AttemptsExhausted(MillraceError):
    """Earlier attempts were lost (their worker died, or was ended by the watchdog) and used up the budget."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        super().__init__(
            f"all {attempts} attempts were used by runs that never finished (their worker died or was ended)"
        )


class RetryAfter(Exception):
    """Raised by a job to retry no sooner than `delay_s` seconds, e.g. a provider's Retry-After.

    It still spends an attempt: a provider that always says "later" must not keep a job alive forever.
    """

    def __init__(self, delay_s: float, reason: str = "") -> None:
        self.delay_s = delay_s
        super().__init__(reason or f"retry requested in {delay_s:g}s")


class GiveUp(Exception):
    """Raised by a job that knows no retry can help; the job becomes a dead letter at once."""


class ConfigurationError(GiveUp):
    """The deployment is wrong, not the job: a program that is not installed, a setting that names nothing.

    No attempt can succeed until a person changes the configuration, so the job is a dead letter at once,
    whatever its retry policy says (even one whose `retry_on` names this class). The message is the
    job's recorded reason: say what is missing and which setting names it. A kind of GiveUp, so code
    that treats GiveUp as final (marking a business record failed, say) treats this the same way.
    """


class LeaseLost(MillraceError):
    """The attempt no longer holds its job: it was handed to another worker (this one looked dead).

    Raised by `JobContext.hold_lease` inside a transaction that makes a guarded side effect, so that the
    transaction rolls back instead of doing the effect a second time.
    """

    def __init__(self, job_id: str, lease: int) -> None:
        self.job_id = job_id
        self.lease = lease
        super().__init__(f"job {job_id!r} was handed on: lease {lease} is no longer its own")


class QueueFull(MillraceError):
    """The queue holds its declared `max_backlog` already: the producer should come back later (a web
    app answers 503 with `Retry-After: retry_after_s`)."""

    def __init__(self, queue: str, backlog: int, max_backlog: int, retry_after_s: float) -> None:
        self.queue = queue
        self.backlog = backlog
        self.max_backlog = max_backlog
        self.retry_after_s = retry_after_s
        super().__init__(f"queue {queue!r} is full: {backlog} jobs, at most {max_backlog}")


class RedisWritesRefused(ResponseError):
    """Redis refuses writes because it cannot persist them (MISCONF): its append-only file or its snapshot
    could not be written, most often for a full disk. Reads still work, and the refusal ends by itself
    once the disk takes writes again; the worker's Redis client waits it out like an outage."""
