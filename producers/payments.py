"""Producers for the webhooks queue: processing a stored provider event."""

from __future__ import annotations

from millrace import Connection, EnqueuedJob, JobArgs, JobClient, JobRef
from queues import WEBHOOKS


class WebhookEventArgs(JobArgs):
    provider: str
    event_id: str


PROCESS_WEBHOOK_EVENT = JobRef("process_webhook_event", WEBHOOKS, WebhookEventArgs)


async def enqueue_webhook_processing(
    client: JobClient, *, provider: str, event_id: str, conn: Connection
) -> EnqueuedJob:
    """Always inside the transaction that stored the event: stored and queued, or neither."""
    return await client.enqueue(
        PROCESS_WEBHOOK_EVENT, WebhookEventArgs(provider=provider, event_id=event_id), conn=conn
    )
