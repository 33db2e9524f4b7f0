"""Tasks and notifications: assigning a task notifies its assignee on the channels they chose."""

from __future__ import annotations

from datetime import datetime

import structlog
from fastapi import HTTPException, Request
from pydantic import BaseModel, Field, StrictBool

import db.notifications
import db.tasks
from jobs.ssrf import UnsafeUrl, check_outbound_url
from millrace import NotFound
from producers.notifications import enqueue_notification
from web.auth import CurrentUser, only_self
from web.fields import BodyId, Line, PathId, WebUrl
from web.state import state_of

log = structlog.get_logger(__name__)


class PreferencesBody(BaseModel):
    # JSON's true and false only: "yes", 1 or "off" would be guesses at what the caller meant
    in_app: StrictBool = True
    slack: StrictBool = False
    sms: StrictBool = False
    slack_webhook_url: WebUrl | None = None
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")


class TaskBody(BaseModel):
    title: Line
    #: the caller themselves: a user assigns tasks to no one else (there are no teams in this demo)
    assignee_id: BodyId


class TaskCreated(BaseModel):
    id: int


class NotificationOut(BaseModel):
    id: int
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None


async def set_preferences(
    user_id: PathId, body: PreferencesBody, caller: CurrentUser, request: Request
) -> PreferencesBody:
    only_self(caller, user_id)
    state = state_of(request)
    if body.slack_webhook_url:
        try:  # refused when saved, so the user hears of it; checked again at each delivery
            await check_outbound_url(body.slack_webhook_url, allowed_hosts=state.settings.outbound_allowed_hosts)
        except UnsafeUrl as error:
            # the reason stays in our log: it names the address the host resolves to, an internal one perhaps
            log.info("slack_url_refused", reason=str(error))
            raise HTTPException(400, "this Slack URL is not a public address, or not one we can reach") from None
    preferences = db.notifications.Preferences(user_id=user_id, **body.model_dump())
    try:
        await db.notifications.set_preferences(state.pool, preferences)
    except NotFound:
        raise HTTPException(404, "no such user") from None
    return body


async def create_task(body: TaskBody, caller: CurrentUser, request: Request) -> TaskCreated:
    only_self(caller, body.assignee_id)
    state = state_of(request)
    async with state.pool.acquire() as conn, conn.transaction():
        try:
            task_id = await db.tasks.insert_task(conn, title=body.title, assignee_id=body.assignee_id)
        except NotFound:
            raise HTTPException(404, "no such assignee") from None
        await enqueue_notification(
            state.jobs,
            user_id=body.assignee_id,
            event_key=f"task:{task_id}:assigned",
            title="Task assigned to you",
            body=body.title,
            conn=conn,
        )
    return TaskCreated(id=task_id)


async def list_notifications(user_id: PathId, caller: CurrentUser, request: Request) -> list[NotificationOut]:
    only_self(caller, user_id)
    notes = await db.notifications.list_notifications(state_of(request).pool, user_id)
    return [
        NotificationOut(id=n.id, title=n.title, body=n.body, created_at=n.created_at, read_at=n.read_at) for n in notes
    ]
