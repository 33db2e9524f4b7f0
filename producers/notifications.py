"""Producers for the notifications queue: one event, fanned out to a user's channels."""

from __future__ import annotations

from pydantic import Field

from millrace import Connection, EnqueuedJob, JobArgs, JobClient, JobRef
from producers.fields import RowId
from queues import NOTIFICATIONS


class NotificationArgs(JobArgs):
    user_id: RowId
    #: what makes the notification unique, e.g. "task:42:assigned": a second run notifies no one twice
    event_key: str = Field(min_length=1, max_length=200)
    title: str = Field(max_length=200)
    body: str = Field(max_length=2000)


NOTIFY_USER = JobRef("notify_user", NOTIFICATIONS, NotificationArgs)
DELIVER_IN_APP = JobRef("deliver_in_app_notification", NOTIFICATIONS, NotificationArgs)
DELIVER_SLACK = JobRef("deliver_slack_notification", NOTIFICATIONS, NotificationArgs)
DELIVER_SMS = JobRef("deliver_sms_notification", NOTIFICATIONS, NotificationArgs)


async def enqueue_notification(
    client: JobClient, *, user_id: int, event_key: str, title: str, body: str, conn: Connection | None = None
) -> EnqueuedJob:
    args = NotificationArgs(user_id=user_id, event_key=event_key, title=title, body=body)
    return await client.enqueue(NOTIFY_USER, args, conn=conn, job_key=f"notify:{user_id}:{event_key}")
