"""One home for configuration: environment variables (prefix CAREPATH_) and a `.env` file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Carepath settings. Secrets are `SecretStr`, so they never appear in logs or reprs."""

    model_config = SettingsConfigDict(env_prefix="CAREPATH_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'carepath.db'}",
        description="SQLAlchemy URL; a SQLite file by default, postgresql+psycopg2://… in production.",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL of the receiver, used in tracking links."
    )

    # IoT fault journey rules
    fault_critical_threshold: int = Field(default=10, description="A fault is critical above this code.")
    fault_window_minutes: int = Field(
        default=60, description="Window in which a device's faults are counted."
    )
    fault_min_count: int = Field(default=1, ge=1, description="Faults needed in the window to open a case.")

    # Twilio (SMS). Without an account SID and token the local channel is used.
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str = "+15005550006"
    twilio_base_url: str | None = Field(
        default=None, description="Override of https://api.twilio.com (stubs)."
    )
    sms_status_callback_path: str = "/webhooks/twilio/status"

    # SendGrid (email). Without an API key the local channel is used.
    sendgrid_api_key: SecretStr | None = None
    sendgrid_from_email: str = "support@carepath.example"
    sendgrid_host: str | None = Field(
        default=None, description="Override of https://api.sendgrid.com (stubs)."
    )

    # Sending
    send_max_attempts: int = Field(
        default=4,
        ge=1,
        description="Attempts while the provider proves it did not take the message (429, 5xx).",
    )
    send_backoff_seconds: float = Field(default=0.5, ge=0, description="First backoff; doubles per attempt.")
    send_timeout_seconds: float = Field(default=10.0, gt=0)
    send_concurrency: int = Field(default=8, ge=1, le=128, description="Messages in flight at once.")
    send_lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A claim on queued messages lasts this long; past it a dead sender's messages are given "
        "back (queued if never attempted, else unknown and looked up).",
    )
    send_defer_seconds: float = Field(
        default=30.0,
        ge=0,
        description="A message the provider kept refusing (429, 5xx, refused connection: provably not taken) "
        "after every attempt waits this long, then is queued again: a provider outage delays, never loses.",
    )
    reconcile_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description="An unknown outcome the provider does not know of after this long is sent again, once.",
    )
    sms_rate_limit_name: str | None = Field(
        default="carepath-sms",
        description="Prefect global rate limit SMS sends take slots from (if it exists).",
    )
    sms_per_second: int = Field(default=10, ge=1, description="The provider's SMS rate (sizes that limit).")

    # Webhook receiver
    iot_webhook_secret: SecretStr | None = Field(default=None, description="HMAC secret of device gateways.")
    cases_webhook_secret: SecretStr | None = Field(default=None, description="HMAC secret of case systems.")
    webshop_webhook_secret: SecretStr | None = Field(default=None, description="HMAC secret of the web shop.")
    portal_webhook_secret: SecretStr | None = Field(default=None, description="HMAC secret of the portal.")
    webhook_tolerance_seconds: int = Field(default=300, ge=1, description="Accepted signature age (replays).")
    webhook_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    sendgrid_inbound_auth: SecretStr | None = Field(
        default=None,
        description="user:password SendGrid Inbound Parse posts with (https://user:password@host/…); unset: refused.",
    )
    inbound_email_max_bytes: int = Field(
        default=10_485_760, ge=1024, description="Largest inbound email post accepted (attachments included)."
    )
    sendgrid_webhook_public_key: str | None = Field(
        default=None, description="SendGrid's signed event webhook verification key (base64 DER)."
    )
    trust_forwarded_headers: bool = Field(
        default=False, description="Behind a proxy: rebuild the public URL from X-Forwarded-Proto/Host."
    )
    receiver_rate_limit_per_client: str = Field(
        default="5000/second",
        description="Requests one client address may make to the receiver (`limits` notation: N/second, "
        "N/minute); over it: 429 with Retry-After, recorded. Empty: no limit.",
    )
    receiver_rate_limit_per_source: str = Field(
        default="20000/second",
        description="Webhook requests one source (iot, cases, twilio, sendgrid, webshop, portal) may make; "
        "over it: 429 with Retry-After, recorded. Empty: no limit.",
    )
    receiver_batch_rows: int = Field(default=500, ge=1, description="Inbox rows per receiver flush.")
    receiver_batch_wait_ms: float = Field(default=5.0, ge=0, description="Longest wait before a flush.")
    announce_interval_ms: float = Field(
        default=1000.0, ge=0, description="Coalesce Prefect events this long."
    )
    prefect_api_url: str | None = Field(
        default=None,
        description="Override of Prefect's own PREFECT_API_URL for announcing events only (authentication "
        "still comes from Prefect's settings: PREFECT_API_KEY, PREFECT_API_AUTH_STRING).",
    )

    # Case status journey
    case_status_notify: list[str] = Field(
        default_factory=lambda: ["resolved"],
        description="Case statuses whose arrival emails the customer (default: resolved only).",
    )
    # SLAs
    sla_on_hold_reasons: list[str] = Field(
        default_factory=lambda: ["on_hold", "waiting_for_customer"],
        description="Status reasons of an active case that pause its SLA clocks (resumed on any other).",
    )
    sla_escalation_email: str = Field(
        default="support-lead@carepath.example",
        description="Who is told of SLA failures (and of warnings on unassigned cases) when the case's queue has no manager.",
    )
    # Weekly bulk delete of merged contacts and the customer summary API
    bulk_delete_archive_days: int = Field(
        default=30,
        ge=1,
        description="Archives of deleted contacts are kept (restorable) this many days, then purged.",
    )
    summary_api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of GET /customers/summary on the receiver; unset: the endpoint refuses all.",
    )
    # Customer portal: registrations and sign-in
    portal_review_email: str = Field(
        default="support@carepath.example",
        description="Who is told of refused registrations and of registrations from unknown domains.",
    )
    public_email_domains_file: str = Field(
        default=str(PROJECT_ROOT / "data" / "public_email_domains.txt"),
        description="The maintained list of public and free-mail domains (never linked to an account).",
    )
    sign_in_max_failures_per_email: int = Field(
        default=5,
        ge=1,
        description="Failed sign-ins per email in the window before every attempt is refused.",
    )
    sign_in_max_failures_per_address: int = Field(
        default=20, ge=1, description="Failed sign-ins per client address in the window before refusal."
    )
    sign_in_window_minutes: int = Field(default=15, ge=1, description="The sign-in rate limit's window.")
    reports_dir: str = Field(default=str(PROJECT_ROOT / "out"), description="Where report CSVs are written.")
    # KPI report: cost of support per product
    support_hourly_rate: float = Field(
        default=60.0, ge=0, description="Cost of an hour of support work (time on resolutions × this)."
    )
    support_currency: str = Field(default="EUR", description="The currency the hourly rate is in (a label).")

    # Batch jobs (imports, reconciliation, KPI report): the task runner their per-chunk tasks run on
    batch_task_runner: Literal["threads", "dask"] = Field(
        default="threads",
        description="threads: in the flow's process; dask: a Dask cluster (local processes or `dask_address`).",
    )
    batch_workers: int = Field(
        default=1, ge=1, le=64, description="Chunks in flight at once (threads, or local Dask workers)."
    )
    dask_address: str | None = Field(
        default=None,
        description="Scheduler of an existing Dask cluster (tcp://host:8786); unset: a local cluster per run.",
    )

    # Data-quality gates (Great Expectations suites) and file imports
    expectations_dir: str = Field(
        default=str(PROJECT_ROOT / "data" / "expectations"),
        description="Where the expectation suites (GX suite JSON, one file per gate) are kept.",
    )
    import_chunk_rows: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Rows of an imported file validated and loaded at once.",
    )
    clock_skew_seconds: int = Field(
        default=300,
        ge=0,
        description="How far in the future a reported time may be (device clocks drift) before a gate refuses it.",
    )

    @field_validator("receiver_rate_limit_per_client", "receiver_rate_limit_per_source")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        """A rate the receiver can enforce: "500/second", "20 per minute", or empty for none."""
        from limits import parse

        if value.strip():
            parse(value)  # ValueError names what it could not read
        return value

    def webhook_secret(self, source: str) -> SecretStr | None:
        """The HMAC secret of one of our own sources (iot, cases)."""
        return getattr(self, f"{source}_webhook_secret", None)

    @property
    def sms_status_callback_url(self) -> str:
        return self.public_base_url.rstrip("/") + self.sms_status_callback_path

    def tracking_url(self, ticket_number: str, token: str) -> str:
        return f"{self.public_base_url.rstrip('/')}/track/{ticket_number}?t={token}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (CAREPATH_ENV_FILE names another .env; empty: none)."""
    return Settings(_env_file=os.environ.get("CAREPATH_ENV_FILE", ".env") or None)


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between sessions)."""
    get_settings.cache_clear()
