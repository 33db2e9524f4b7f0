"""Email delivery backends, chosen by settings: SMTP, an HTTP email API, or `.eml` files for development."""

from __future__ import annotations

import asyncio
import base64
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib
import httpx

from jobs.providers import check_response
from millrace import GiveUp
from settings import Settings


class EmailBackend(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpBackend:
    """SMTP's own meaning of codes: 4xx is transient (retry), 5xx is permanent (give up)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self._settings
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                use_tls=s.smtp_use_tls,
                start_tls=False if not s.smtp_use_tls else None,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            if all(500 <= refusal.code < 600 for refusal in error.recipients):
                raise GiveUp(f"SMTP refused every recipient: {error}") from error
            raise
        except aiosmtplib.SMTPResponseException as error:
            if 500 <= error.code < 600:
                raise GiveUp(f"SMTP refused the message ({error.code}): {error.message}") from error
            raise


class HttpApiBackend:
    """The common providers' shape: a JSON POST with a bearer token; attachments in base64."""

    def __init__(self, http: httpx.AsyncClient, url: str, token: str) -> None:
        self._http = http
        self._url = url
        self._token = token

    async def send(self, message: EmailMessage) -> None:
        response = await self._http.post(
            self._url,
            json=_as_api_payload(message),
            headers={"Authorization": f"Bearer {self._token}", "Idempotency-Key": str(message["Message-ID"])},
        )
        check_response(response, "email API")


def _as_api_payload(message: EmailMessage) -> dict[str, object]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return {
        "from": str(message["From"]),
        "to": [str(message["To"])],
        "subject": str(message["Subject"]),
        "text": text.get_content() if text is not None else "",
        "html": html.get_content() if html is not None else "",
        "attachments": [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "content_base64": base64.b64encode(_attachment_bytes(part)).decode(),
            }
            for part in message.iter_attachments()
        ],
    }


def _attachment_bytes(part: EmailMessage) -> bytes:
    content = part.get_content()
    return content if isinstance(content, bytes) else str(content).encode()


class EmlFolderBackend:
    """Writes each message as `<message-id>.eml`: open them with any mail client."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    async def send(self, message: EmailMessage) -> None:
        name = (message["Message-ID"] or "message").strip("<>").replace("/", "_") + ".eml"
        await asyncio.to_thread(self._write, self._folder / name, bytes(message))

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # a reader never sees half a message


def backend_from(settings: Settings, http: httpx.AsyncClient) -> EmailBackend:
    if settings.email_backend == "smtp":
        return SmtpBackend(settings)
    if settings.email_backend == "http":
        if not settings.email_api_url or not settings.email_api_token:
            raise ValueError("EMAIL_BACKEND=http needs EMAIL_API_URL and EMAIL_API_TOKEN")
        return HttpApiBackend(http, settings.email_api_url, settings.email_api_token.get_secret_value())
    return EmlFolderBackend(settings.eml_dir)
