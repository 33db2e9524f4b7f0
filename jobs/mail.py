"""Email delivery backends, chosen by settings: SMTP, or `.eml` files in a folder for development."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from settings import Settings


class EmailBackend(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpBackend:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self._settings
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


def backend_from(settings: Settings) -> EmailBackend:
    if settings.email_backend == "smtp":
        return SmtpBackend(settings)
    return EmlFolderBackend(settings.eml_dir)
