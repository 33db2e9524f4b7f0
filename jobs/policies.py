"""Retry policies of the job families: retry only what can change, give up at once on the data's errors."""

from __future__ import annotations

import jinja2
import pydantic

from millrace import Backoff, InvalidJobArguments, NotFound, RetryPolicy

#: errors that come from the data (a missing row, a value out of range, a template that cannot render
#: it, a follow-up job's arguments the data cannot fill): the same input fails the same way on every
#: attempt, so a job gives up at once with the reason. Header values the email package refuses and
#: unsafe webhook URLs are GiveUp where they are found (jobs/emails.py, jobs/ssrf.py).
DATA_ERRORS: tuple[type[BaseException], ...] = (
    NotFound,
    pydantic.ValidationError,
    InvalidJobArguments,
    jinja2.TemplateError,
)


def retrying(attempts: int, backoff: Backoff) -> RetryPolicy:
    """Retries for what can change (a provider's 5xx, a timeout, a lost connection), never for the data."""
    return RetryPolicy(attempts=attempts, backoff=backoff, give_up_on=DATA_ERRORS)
