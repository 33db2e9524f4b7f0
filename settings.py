"""The one Settings class: every tunable, read from the environment or `.env` at entry points only."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, PostgresDsn, RedisDsn, Secret, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from millrace.dashboard import Login
from millrace.storage import DownloadLinks, S3Config

#: the dashboard's session secret where none is set (development): this process's own
_PROCESS_SESSION_SECRET = secrets.token_hex(32)


class Settings(BaseSettings):
    """Environments differ by these values, never by code paths.

    Nested values use a double underscore: `QUEUE_CONCURRENCY__EMAILS=20`.
    """

    # a bad value is named in the error, never echoed: a malformed DSN may still carry a password
    model_config = SettingsConfigDict(
        env_file=".env", env_nested_delimiter="__", extra="ignore", hide_input_in_errors=True
    )

    # Secret: repr() and tracebacks show '**********'; read them with database_dsn() and redis_dsn()
    database_url: Secret[PostgresDsn] = Secret(PostgresDsn("postgresql://postgres@127.0.0.1:5432/millrace"))
    redis_url: Secret[RedisDsn] = Secret(RedisDsn("redis://127.0.0.1:6379/0"))
    database_pool_max_size: int = 10
    #: PostgreSQL ends a statement of the workers' and the web app's pools that runs longer than this
    database_statement_timeout_s: float = 60.0

    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"

    # How often an idle arq worker asks Redis for due jobs; also the floor of enqueue-to-start latency.
    poll_delay_s: float = 0.1
    # Per-queue overrides of the concurrency declared in queues.py.
    queue_concurrency: dict[str, int] = Field(default_factory=dict)
    # The outbox relay wakes on NOTIFY; this sweep is the safety net for a missed notification.
    outbox_sweep_interval_s: float = 1.0
    # How long arq keeps a finished job's id: redeliveries within it are recognised and dropped.
    keep_result_s: int = 3600
    # On SIGTERM (a deploy) workers take no new job and give running ones this long to finish.
    shutdown_grace_s: int = 25
    # How often pending records are compared with Redis, so that what Redis lost is queued again.
    reconcile_interval_s: float = 30.0
    # Each worker records a heartbeat this often; one silent for SILENT_AFTER_S is dead and its jobs
    # go to the others (after two missed beats when its process is gone: its database session ended).
    heartbeat_interval_s: float = Field(default=2.0, gt=0, le=5)
    silent_after_s: float = Field(default=10.0, gt=0)
    # A job that blocks a worker's event loop this long ends the process (the supervisor restarts it).
    event_loop_stall_s: float = Field(default=5.0, gt=0)

    email_backend: Literal["eml", "smtp", "http"] = "eml"
    email_from: str = "Millrace <noreply@millrace.local>"
    eml_dir: Path = Path("var/outbox-mail")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_use_tls: bool = False
    smtp_timeout_s: float = 10.0

    web_host: str = "127.0.0.1"
    web_port: int = 8000
    # Every request body is refused past this size (webhooks have their own limit below).
    web_max_body_bytes: int = 64 * 1024
    # The status page and the API docs ask for user `operator` and the password this argon2 hash is of
    # (python -c "import argon2; print(argon2.PasswordHasher().hash('...'))"). Unset: nobody gets in.
    # In .env, single-quote it: the hash is full of `$`, which `make run`'s shell would expand.
    operator_password_hash: SecretStr | None = None
    # The dashboard (/admin) lets the operator log in as `operator` (every action) and, when this hash is
    # set, `viewer` (a read-only role). Outside development the web app refuses to start without the
    # operator's hash, and the dashboard's cookie is sent over HTTPS only.
    viewer_password_hash: SecretStr | None = None
    environment: Literal["development", "production"] = "production"
    # Signs the dashboard's session cookie (at least 32 characters, the same on every web process); the
    # web app does not start without it outside development. Unset (development), a random one each
    # process: sessions end when it does. A new password ends the sessions opened with the old one.
    dashboard_session_secret: SecretStr | None = Field(default=None, min_length=32)
    # Argument fields the dashboard never shows, besides the runtime's list (passwords, tokens, keys...)
    dashboard_redacted: list[str] = Field(default_factory=list)

    # Webhooks: several secrets per provider while a key rotates, e.g. {"stripe": ["whsec_new", "whsec_old"]}
    webhook_secrets: dict[str, list[SecretStr]] = Field(default_factory=dict)
    webhook_tolerance_s: int = 300
    webhook_max_body_bytes: int = 256 * 1024

    # Who hears about signups, subscriptions and failed payments
    admin_email: str = "admin@millrace.local"

    # Outbound HTTP to providers: one client per process, with explicit timeouts
    http_timeout_s: float = 10.0
    email_api_url: str | None = None
    email_api_token: SecretStr | None = None
    crm_api_url: str | None = None
    crm_api_token: SecretStr | None = None
    sms_api_url: str | None = None
    sms_api_token: SecretStr | None = None
    # Hosts that user-supplied URLs may reach although they resolve to private or loopback addresses
    # (tests and local development only; the SSRF guard refuses such addresses otherwise)
    outbound_allowed_hosts: list[str] = Field(default_factory=list)

    # Quotation PDFs: the LibreOffice command, how long one conversion may take, and the DOCX template
    # (None: the one in jobs/templates/documents/). A command that is not installed ends the job at once
    # (a configuration error), and the documents worker names it when it starts.
    soffice_command: list[str] = Field(default_factory=lambda: ["soffice"], min_length=1)
    pdf_convert_timeout_s: float = Field(default=60.0, gt=0)
    quotation_template: Path | None = None

    # AI document processing: an OpenAI-compatible chat-completions API (base URL up to /v1), the model,
    # and the calls a minute it allows, shared by every worker (at most 2 calls in flight: see jobs/documents.py)
    ai_api_url: str | None = None
    ai_api_key: SecretStr | None = None
    ai_model: str = "gpt-4o-mini"
    ai_calls_per_minute: int = Field(default=60, gt=0)
    ai_timeout_s: float = Field(default=60.0, gt=0)
    # The command that reads a PDF's text (poppler's pdftotext), checked like soffice_command
    pdftotext_command: list[str] = Field(default_factory=lambda: ["pdftotext"], min_length=1)
    # An uploaded document (PDF or text) past this size is refused with 413.
    document_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)

    # An uploaded import file past this size is refused with 413 while it streams in.
    import_max_bytes: int = Field(default=100 * 1024 * 1024, gt=0)

    # Where uploads, exports and rendered documents live: a local folder (one machine) or an S3 bucket.
    storage_backend: Literal["folder", "s3"] = "folder"
    storage_folder: Path = Path("var/storage")
    s3_bucket: str = "millrace"
    s3_endpoint_url: str | None = None  # None: AWS itself; set it for MinIO, R2, Ceph...
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = ""
    # Download links are signed with this secret (at least 16 bytes), shared by the web app and the
    # workers that send links; unset, no link is made or served. Where the web app is reached from outside:
    download_link_secret: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    download_link_valid_s: int = Field(default=7 * 24 * 3600, gt=0)

    def dashboard_logins(self) -> list[Login]:
        logins = []
        if self.operator_password_hash is not None:
            logins.append(Login(name="operator", password_hash=self.operator_password_hash.get_secret_value()))
        if self.viewer_password_hash is not None:
            logins.append(
                Login(name="viewer", password_hash=self.viewer_password_hash.get_secret_value(), role="viewer")
            )
        return logins

    def dashboard_secret(self) -> str:
        if self.dashboard_session_secret is not None:
            return self.dashboard_session_secret.get_secret_value()
        # never derived from anything a reader of the configuration could know (the password's hash)
        return _PROCESS_SESSION_SECRET

    def database_dsn(self) -> str:
        return str(self.database_url.get_secret_value())

    def redis_dsn(self) -> str:
        return str(self.redis_url.get_secret_value())

    def storage_location(self) -> Path | S3Config:
        if self.storage_backend == "folder":
            return self.storage_folder
        secret = self.s3_secret_access_key
        return S3Config(
            bucket=self.s3_bucket,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            access_key_id=self.s3_access_key_id,
            secret_access_key=None if secret is None else secret.get_secret_value(),
            prefix=self.s3_prefix,
        )

    def download_links(self) -> DownloadLinks | None:
        if self.download_link_secret is None:
            return None
        secret = self.download_link_secret.get_secret_value().encode()
        return DownloadLinks(secret=secret, base_url=self.public_base_url.rstrip("/") + "/files")
