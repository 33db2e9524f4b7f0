"""Producers for the emails queue."""

from __future__ import annotations

from pydantic import Field

from db.pool import Connection
from millrace.client import EnqueuedJob, JobClient
from millrace.declare import JobArgs, JobRef
from queues import EMAILS


class WelcomeEmailArgs(JobArgs):
    user_id: int = Field(gt=0)


SEND_WELCOME_EMAIL = JobRef("send_welcome_email", EMAILS, WelcomeEmailArgs)


async def enqueue_welcome_email(client: JobClient, *, user_id: int, conn: Connection | None = None) -> EnqueuedJob:
    """Welcome a new user; pass the signup's transaction as `conn` so a rolled-back signup sends nothing."""
    return await client.enqueue(SEND_WELCOME_EMAIL, {"user_id": user_id}, conn=conn, job_key=f"welcome:{user_id}")
