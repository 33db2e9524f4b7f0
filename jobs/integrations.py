"""Integrations: the CRM contact of each user, kept in step through the CRM's HTTP API."""

from __future__ import annotations

import structlog

import db.users
from jobs.policies import retrying
from jobs.providers import check_response
from jobs.services import Services
from millrace import GiveUp, JobContext, exponential, job
from producers.integrations import SYNC_CRM_CONTACT, CrmContactArgs

log = structlog.get_logger(__name__)


@job(SYNC_CRM_CONTACT, retry=retrying(6, exponential(first_s=5, factor=4, cap_s=1800)))
async def sync_crm_contact(ctx: JobContext[Services], args: CrmContactArgs) -> None:
    """A PUT keyed by our user id: running it twice leaves one contact with the latest details."""
    settings = ctx.services.settings
    if not settings.crm_api_url or not settings.crm_api_token:
        raise GiveUp("no CRM configured (CRM_API_URL, CRM_API_TOKEN)")
    async with ctx.services.db.acquire() as conn:
        user = await db.users.get_user(conn, args.user_id)
    response = await ctx.services.http.put(
        f"{settings.crm_api_url}/contacts/{user.id}",
        json={"external_id": str(user.id), "email": user.email, "name": user.name},
        headers={"Authorization": f"Bearer {settings.crm_api_token.get_secret_value()}"},
    )
    check_response(response, "CRM")
    log.info("crm_contact_synced", user_id=user.id)
