"""AI document processing: extract a document's text, ask an OpenAI-compatible model for a structured
summary, validate it, store it with the tokens it cost.

An answer that fails validation goes back to the model with the validation errors, a bounded number of
times. Calls hold one of AI_IN_FLIGHT places, across every worker process, for the whole job, and each
call waits for its slot under the provider's rate; a 429 holds every worker back for its Retry-After.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

import pydantic
import structlog
from pydantic import BaseModel, ConfigDict, Field

import db.documents
from db.documents import Document
from jobs import ai_client
from jobs.ai_client import Message, ProviderRefused, ProviderThrottled
from jobs.policies import retrying
from jobs.programs import ProgramsNeeded
from jobs.services import Services
from jobs.text_extraction import PDFTOTEXT, Unextractable, extract_text
from millrace import Cap, ConfigurationError, Connection, GiveUp, JobContext, RateLimit, RetryAfter, exponential, job
from millrace.limits import hold_off, wait_for_slot
from millrace.storage import download
from producers.documents import ANALYZE_DOCUMENT, DocumentArgs
from producers.notifications import enqueue_notification

log = structlog.get_logger(__name__)

#: calls to the AI provider in flight at once, whatever the number of workers
AI_IN_FLIGHT = Cap("ai-provider", 2)
#: answers that fail validation are sent back this many times with their errors, then the job gives up
MAX_REPAIRS = 2
AI_POLICY = retrying(6, exponential(first_s=2, factor=3, cap_s=300))
#: its worker names the programs missing when it starts (jobs/worker.py)
PROGRAMS = ProgramsNeeded(job=ANALYZE_DOCUMENT, programs=(PDFTOTEXT,))

SYSTEM_PROMPT = (
    "You read business documents and answer with one JSON object only, with these keys: "
    '"title" (string, at most 200 characters), "document_type" (one of "invoice", "contract", "letter", '
    '"report", "other"), "language" (a two-letter ISO 639-1 code), "summary" (string, at most 1000 '
    'characters), "key_points" (an array of at most 10 strings).'
)


class DocumentSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=200)]
    document_type: Literal["invoice", "contract", "letter", "report", "other"]
    language: Annotated[str, Field(pattern=r"^[a-z]{2}$")]
    summary: Annotated[str, Field(min_length=1, max_length=1000)]
    key_points: Annotated[list[Annotated[str, Field(max_length=500)]], Field(max_length=10)]


def provider_rate(services: Services) -> RateLimit:
    return RateLimit("ai-provider-calls", calls=services.settings.ai_calls_per_minute, per_s=60)


async def document_dead(ctx: JobContext[Services], args: DocumentArgs, reason: str) -> None:
    """However the job died, the document shows failed and its user hears of it."""
    document = await db.documents.get_document(ctx.services.db, args.document_id)
    if document.status == "pending":
        await _failed(ctx, document, reason)


@job(ANALYZE_DOCUMENT, retry=AI_POLICY, timeout_s=600, cap=AI_IN_FLIGHT, on_dead=document_dead)
async def analyze_document(ctx: JobContext[Services], args: DocumentArgs) -> None:
    services = ctx.services
    document = await db.documents.get_document(services.db, args.document_id)
    if document.status != "pending":
        return
    try:
        text = await _text_of(services, document)
        summary = await _summarize(ctx, document, text)
    except (Unextractable, NotUnderstood) as error:
        await _failed(ctx, document, error.reason)
        raise GiveUp(error.reason) from None
    except Exception as error:
        if ctx.run_attempt >= ctx.max_attempts or isinstance(error, GiveUp | ProviderRefused):
            await _failed(ctx, document, f"{type(error).__name__}: {error}")
        if isinstance(error, ProviderRefused):
            raise GiveUp(str(error)) from None
        raise
    async with services.db.acquire() as conn, conn.transaction():
        await db.documents.mark_document_completed(conn, document.id, summary.model_dump())
        await _notify(ctx, conn, document, "is processed", summary.title)


async def _failed(ctx: JobContext[Services], document: Document, reason: str) -> None:
    async with ctx.services.db.acquire() as conn, conn.transaction():
        await db.documents.mark_document_failed(conn, document.id, reason)
        await _notify(ctx, conn, document, "could not be processed", reason)


async def _notify(ctx: JobContext[Services], conn: Connection, document: Document, what: str, body: str) -> None:
    """Tell the user, in the transaction that records the outcome: both happen, or neither."""
    await enqueue_notification(
        ctx.jobs,
        user_id=document.user_id,
        event_key=f"document:{document.id}:{what.split()[-1]}",
        title=f"Your document {document.filename[:100]} {what}",
        body=body[:2000],
        conn=conn,
    )


class NotUnderstood(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def _text_of(services: Services, document: Document) -> str:
    with tempfile.TemporaryDirectory(prefix="millrace-document-") as folder:
        path = Path(folder) / "document"
        await download(services.storage, document.storage_key, path)
        return await extract_text(path, document.kind, pdftotext_command=services.settings.pdftotext_command)


async def _summarize(ctx: JobContext[Services], document: Document, text: str) -> DocumentSummary:
    messages: list[Message] = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]
    problems = ""
    for _ in range(MAX_REPAIRS + 1):
        answer = await _call(ctx, document, messages)
        try:
            summary = DocumentSummary.model_validate_json(answer.content)
        except pydantic.ValidationError as error:
            await _record(ctx, document, "invalid", answer)
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in error.errors()[:10])
            messages += [
                {"role": "assistant", "content": answer.content[:4000]},
                {"role": "user", "content": f"That answer is not valid: {problems}. Answer again with the JSON only."},
            ]
            continue
        await _record(ctx, document, "ok", answer)
        return summary
    raise NotUnderstood(f"the model gave no valid answer in {MAX_REPAIRS + 1} tries; the last problems: {problems}")


async def _call(ctx: JobContext[Services], document: Document, messages: list[Message]) -> ai_client.Completion:
    services = ctx.services
    settings = services.settings
    if settings.ai_api_url is None:
        raise ConfigurationError("no AI provider is configured (settings.ai_api_url, AI_API_URL)")
    rate = provider_rate(services)
    await wait_for_slot(ctx.jobs.redis, rate)
    key = None if settings.ai_api_key is None else settings.ai_api_key.get_secret_value()
    try:
        return await ai_client.complete(
            services.http,
            base_url=settings.ai_api_url,
            api_key=key,
            model=settings.ai_model,
            messages=messages,
            timeout_s=settings.ai_timeout_s,
        )
    except ProviderThrottled as error:
        await hold_off(ctx.jobs.redis, rate, rate.key_for({}), error.retry_after_s)  # every worker waits
        await _record(ctx, document, "rate_limited", None)
        raise RetryAfter(error.retry_after_s, str(error)) from None
    except ai_client.ProviderUnavailable:
        await _record(ctx, document, "error", None)
        raise


async def _record(
    ctx: JobContext[Services],
    document: Document,
    outcome: db.documents.CallOutcome,
    answer: ai_client.Completion | None,
) -> None:
    await db.documents.record_call(
        ctx.services.db,
        document_id=document.id,
        user_id=document.user_id,
        job_id=ctx.job_id,
        attempt=ctx.attempt,
        outcome=outcome,
        prompt_tokens=0 if answer is None else answer.prompt_tokens,
        completion_tokens=0 if answer is None else answer.completion_tokens,
    )
    log.info(
        "ai_call_recorded",
        outcome=outcome,
        tokens=0 if answer is None else answer.prompt_tokens + answer.completion_tokens,
    )
