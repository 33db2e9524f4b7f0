"""Declaring jobs: a producer-side reference (name, queue, argument model) and its worker-side body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, Literal, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from millrace.caps import Cap
from millrace.context import JobContext
from millrace.errors import InvalidJobArguments
from millrace.limits import RateLimit
from millrace.queues import Queue
from millrace.retry import NO_RETRY, RetryPolicy
from millrace.text import unstorable_text

A = TypeVar("A", bound="JobArgs")
S = TypeVar("S")


class JobArgs(BaseModel):
    """Base of every job's argument model: JSON values only, nothing unexpected, nothing unstorable.

    Built by a producer (`WelcomeEmailArgs(user_id=7)`, checked by mypy) or from JSON by the worker;
    either way bad values raise InvalidJobArguments, naming each field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise InvalidJobArguments(type(self).__name__, describe_validation_error(error)) from None

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # PostgreSQL's jsonb holds neither NUL nor lone surrogates: refused here, not as a failed INSERT
        problem = unstorable_text(value)
        if problem is not None:
            raise PydanticCustomError("unstorable_text", problem)
        return value


class NoArgs(JobArgs):
    pass


def describe_validation_error(error: ValidationError) -> list[str]:
    """One readable line per bad field: `user_id: Input should be a valid integer`."""
    return [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()]


@dataclass(frozen=True, slots=True)
class JobRef(Generic[A]):
    """What a producer needs to enqueue a job, and no more: producers never import job bodies."""

    name: str
    queue: Queue
    args: type[A]

    def validate(self, raw: Any) -> A:
        """Arguments from JSON values (the worker's payload, the CLI's --args)."""
        try:
            return self.args.model_validate(raw)
        except ValidationError as error:
            raise InvalidJobArguments(self.name, describe_validation_error(error)) from None
        except InvalidJobArguments as error:
            raise InvalidJobArguments(self.name, error.errors) from None

    def dump(self, args: A) -> dict[str, Any]:
        """The JSON values a job record and its payload carry."""
        if type(args) is not self.args:
            raise TypeError(f"job {self.name!r} takes {self.args.__name__}, not {type(args).__name__}")
        return args.model_dump(mode="json")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDefinition(Generic[S, A]):
    ref: JobRef[A]
    run: Callable[[JobContext[S], A], Awaitable[None]]
    retry: RetryPolicy
    timeout_s: float
    rate_limit: RateLimit | None = None
    cap: Cap | None = None
    #: called once the job is dead for good (its policy gave up, its attempts ran out, its worker died
    #: on the last one), with the reason, before that end is recorded; it must be idempotent
    on_dead: Callable[[JobContext[S], A, str], Awaitable[None]] | None = None

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def caps(self) -> tuple[Cap, ...]:
        """The caps an attempt holds a place under while it runs: the job's own, then its queue's."""
        return tuple(c for c in (self.cap, self.ref.queue.shared_cap) if c is not None)


def job(
    ref: JobRef[A],
    *,
    retry: RetryPolicy = NO_RETRY,
    timeout_s: float | None = None,
    rate_limit: RateLimit | None = None,
    cap: Cap | None = None,
    on_dead: Callable[[JobContext[S], A, str], Awaitable[None]] | None = None,
) -> Callable[[Callable[[JobContext[S], A], Awaitable[None]]], JobDefinition[S, A]]:
    """Bind a job body to its reference, with its retry policy, timeout (default: the queue's), the
    rate limit its starts share with every worker, the cap on how many run at once everywhere, and
    what to do when it is dead for good (`on_dead(ctx, args, reason)`: mark the business record failed)."""

    def declare(run: Callable[[JobContext[S], A], Awaitable[None]]) -> JobDefinition[S, A]:
        return JobDefinition(
            ref=ref,
            run=run,
            retry=retry,
            timeout_s=timeout_s or ref.queue.timeout_s,
            rate_limit=rate_limit,
            cap=cap,
            on_dead=on_dead,
        )

    return declare


Missed = Literal["skip", "run_once"]
CronField = int | set[int] | None


class CronFields(TypedDict):
    month: CronField
    day: CronField
    weekday: CronField
    hour: CronField
    minute: CronField
    second: CronField
    microsecond: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CronSchedule:
    """Fields as in arq.cron: None means every value; `second` defaults to 0."""

    month: CronField = None
    day: CronField = None
    weekday: CronField = None
    hour: CronField = None
    minute: CronField = None
    second: CronField = 0

    def arq_fields(self) -> CronFields:
        """The keyword arguments arq's `cron()` and `next_cron()` take; ticks fall on whole seconds."""
        return CronFields(
            month=self.month,
            day=self.day,
            weekday=self.weekday,
            hour=self.hour,
            minute=self.minute,
            second=self.second,
            microsecond=0,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CronDefinition(Generic[S]):
    name: str
    queue: Queue
    run: Callable[[JobContext[S]], Awaitable[None]]
    schedule: CronSchedule
    #: what a worker does on start-up about ticks missed while every worker of the queue was down
    missed: Missed
    retry: RetryPolicy
    timeout_s: float


def cron(
    *,
    queue: Queue,
    schedule: CronSchedule,
    missed: Missed = "skip",
    retry: RetryPolicy = NO_RETRY,
    timeout_s: float | None = None,
    name: str | None = None,
) -> Callable[[Callable[[JobContext[S]], Awaitable[None]]], CronDefinition[S]]:
    def declare(run: Callable[[JobContext[S]], Awaitable[None]]) -> CronDefinition[S]:
        return CronDefinition(
            name=name or run.__name__,
            queue=queue,
            run=run,
            schedule=schedule,
            missed=missed,
            retry=retry,
            timeout_s=timeout_s or queue.timeout_s,
        )

    return declare


def collect(
    modules: Iterable[ModuleType],
) -> tuple[list[JobDefinition[Any, Any]], list[CronDefinition[Any]]]:
    """Every job and cron definition found at the top level of the given modules."""
    jobs: list[JobDefinition[Any, Any]] = []
    crons: list[CronDefinition[Any]] = []
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, JobDefinition):
                jobs.append(value)
            elif isinstance(value, CronDefinition):
                crons.append(value)
    return jobs, crons


def collect_refs(modules: Iterable[ModuleType]) -> dict[str, JobRef[Any]]:
    """Every job reference declared at the top level of the given producer modules, by name."""
    return {v.name: v for m in modules for v in vars(m).values() if isinstance(v, JobRef)}
