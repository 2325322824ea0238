"""Settings read from the environment (prefix ``NOTIFLOW_``) and an optional ``.env`` file."""

from __future__ import annotations

import ipaddress
import json
import math
from collections import Counter
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

import limits
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEVELOPMENT_SECRET_KEY = "development-only-secret-key-change-me"  # noqa: S105 - refused outside development
DEVELOPMENT_PUSHER_SECRET = "development-only-pusher-secret"  # noqa: S105 - refused outside development
# Pusher's webhook event names (docs/realtime.md, "Webhooks"); the default leaves out the two
# that can be as many as the messages (client_event) or the subscriptions (cache_miss).
WEBHOOK_EVENTS = (
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
)
DEFAULT_WEBHOOK_EVENTS = "channel_occupied,channel_vacated,member_added,member_removed"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class BroadcastDriver(StrEnum):
    BUILTIN = "builtin"  # notiflow's own WebSocket server
    PUSHER = "pusher"  # any Pusher-compatible HTTP API (managed Pusher, Soketi, another notiflow)
    LOG = "log"
    NULL = "null"


class SmtpTls(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class MailDriver(StrEnum):
    SMTP = "smtp"  # the SMTP server of NOTIFLOW_SMTP_*
    FILE = "file"  # one .eml file per message in NOTIFLOW_MAIL_DIR, nothing sent


class PusherAppSettings(BaseModel):
    """One more Pusher app beside the default one (``NOTIFLOW_PUSHER_APPS``, docs/realtime.md,
    "Apps"): its credentials and limits; a limit left out is the default app's setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Digits, as the default app's id (the PyPI SDK insists).
    id: str = Field(pattern=r"^[0-9]+$", max_length=50)
    # Part of the WebSocket path /app/{key}.
    key: str = Field(pattern=r"^[-A-Za-z0-9_.]+$", max_length=100)
    secret: str = Field(min_length=1)
    # Open connections at once (cluster-wide with Redis); over it: pusher:error 4100.
    max_connections: int | None = Field(default=None, ge=1)
    # Off: every client event is refused with pusher:error 4301.
    client_events: bool = True
    # Unset: NOTIFLOW_WS_PRESENCE_LIMIT.
    max_presence_members: int | None = Field(default=None, ge=1)
    # HTTP API requests the app may make, in the notation of the `limits` library ("100/second",
    # "1000 per 1 minute"); over it: 429. Unset: no limit.
    api_rate_limit: str | None = None
    # The app's Pusher webhooks (unset: none), as NOTIFLOW_WEBHOOK_URL / _EVENTS are the
    # default app's.
    webhook_url: str | None = None
    webhook_events: str = DEFAULT_WEBHOOK_EVENTS

    @field_validator("api_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate_limit(value)
        return value


def parse_rate_limit(value: str) -> limits.RateLimitItem:
    """A rate limit such as ``"100/second"`` or ``"10 per 2 seconds"``; ``ValueError`` else."""
    try:
        return limits.parse(value)
    except ValueError:
        raise ValueError(
            f"api_rate_limit {value!r} is not a rate such as '100/second' or '10 per 2 seconds'"
        ) from None


_APPS = TypeAdapter(list[PusherAppSettings])


class Settings(BaseSettings):
    """Every knob of notiflow. Instantiate through :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite+aiosqlite:///./var/notiflow.db"
    database_echo: bool = False
    redis_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    ws_port: int = Field(default=6001, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEVELOPMENT_SECRET_KEY
    log_level: str = "INFO"
    log_json: bool = True

    # Real-time push (Pusher protocol). The app id must be digits (the PyPI SDK insists).
    pusher_app_id: str = Field(default="1", pattern=r"^[0-9]+$")
    pusher_app_key: str = Field(default="notiflow-key", min_length=1, max_length=100)
    pusher_app_secret: str = DEVELOPMENT_PUSHER_SECRET
    # More apps, as data (docs/realtime.md, "Apps"): a JSON list of objects
    # {"id", "key", "secret", "max_connections", "client_events", "max_presence_members",
    # "api_rate_limit", "webhook_url", "webhook_events"} here, or in the JSON file named by
    # PUSHER_APPS_FILE (one of the two). The app above stays the default one.
    pusher_apps: Annotated[list[PusherAppSettings], NoDecode] = Field(default_factory=list)
    pusher_apps_file: Path | None = None

    @field_validator("pusher_apps", mode="before")
    @classmethod
    def _apps_from_json(cls, value: Any) -> Any:
        if isinstance(value, str | bytes):
            return _decode_apps(value, "NOTIFLOW_PUSHER_APPS")
        return value

    # base64 of 32 bytes shared with backends that publish to private-encrypted channels;
    # unset, one is derived from the secret key (then only notiflow itself could encrypt).
    pusher_encryption_master_key: str | None = None
    broadcast_driver: BroadcastDriver = BroadcastDriver.BUILTIN
    # Where the "pusher" driver sends events (e.g. api-eu.pusher.com:443 over https).
    pusher_host: str = "127.0.0.1"
    pusher_port: int = Field(default=8000, ge=1, le=65535)
    pusher_scheme: str = Field(default="http", pattern=r"^https?$")
    pusher_cluster: str = "mt1"
    ws_host: str = "127.0.0.1"
    # The host and port browsers connect to (behind a proxy these differ from the bind address).
    ws_public_host: str | None = None
    ws_public_port: int | None = None
    ws_allowed_origins: list[str] = Field(default_factory=list)
    ws_max_message_bytes: int = Field(default=10_000, ge=256)
    ws_activity_timeout: int = Field(default=30, ge=5, le=600)
    ws_client_event_rate: float = Field(default=10.0, gt=0)
    ws_presence_limit: int = Field(default=100, ge=1)
    # Limits against hostile clients (docs/realtime.md, "Errors and limits").
    ws_max_channels_per_connection: int = Field(default=100, ge=1)
    ws_max_message_fragments: int = Field(default=1_000, ge=1)
    ws_max_buffered_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    ws_close_grace_seconds: float = Field(default=3.0, gt=0, le=60)
    # How long a cache channel keeps its last event (Pusher: up to 30 minutes).
    ws_cache_ttl_seconds: float = Field(default=1800.0, gt=0, le=86_400)
    # Replay of missed notifications on private-notifications.{userId} (docs/realtime.md,
    # "Replay of missed notifications"): at most this many events, none older than this; past
    # the window one ResyncRequired instead. 0 events turns replay and the snapshot off.
    ws_replay_max_events: int = Field(default=100, ge=0, le=1_000)
    ws_replay_max_age_seconds: float = Field(default=86_400.0, gt=0, le=30 * 86_400)
    # A replay whose database work takes longer is given up (ResyncRequired).
    ws_replay_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Close connections that have not signed in (pusher:signin) within this many seconds, with
    # 4009 (Soketi's userAuthenticationTimeout); 0 turns it off.
    ws_user_auth_timeout_seconds: float = Field(default=0.0, ge=0, le=3600)

    @field_validator("ws_user_auth_timeout_seconds")
    @classmethod
    def _user_auth_timeout_off_or_reachable(cls, seconds: float) -> float:
        # Under a second no front end signs in reliably (its auth request alone may take that),
        # and the deadline's sweep would run several times a second.
        if 0 < seconds < 1:
            raise ValueError("must be 0 (off) or at least 1 second")
        return seconds

    # Email: over SMTP, or written to a folder (docs/delivery.md, "Where email goes"). Unset,
    # the driver follows from the rest: an SMTP setting given means SMTP; in development with
    # none, the folder; in production one of the two must be said.
    mail_driver: MailDriver | None = None
    mail_dir: Path = Path("var/mail")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_tls: SmtpTls = SmtpTls.NONE
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # An email gets 3 tries spread over this horizon (the last one between 1 and 1.2 horizons
    # after the first failure): an SMTP outage shorter than it loses no email.
    email_retry_horizon_seconds: float = Field(default=3600.0, gt=0)
    # While emails wait out a mail server problem, the sweeper checks this often (connect, EHLO,
    # NOOP, QUIT) whether the server answers again, and then sends them without waiting.
    email_probe_interval_seconds: float = Field(default=15.0, gt=0)
    mail_from: str = "notiflow <no-reply@notiflow.localhost>"

    # Web Push (VAPID, RFC 8292): generate a pair with `notiflow webpush keys`.
    vapid_public_key: str | None = None
    vapid_private_key: str | None = None
    vapid_subject: str = "mailto:admin@notiflow.localhost"
    webpush_ttl_seconds: int = Field(default=86_400, ge=0)

    # SMS: "log" writes one log line per message; "twilio" posts to a Twilio-compatible API.
    sms_driver: str = Field(default="log", pattern=r"^(log|twilio)$")
    sms_base_url: str = "https://api.twilio.com"
    sms_account_sid: str | None = None
    sms_auth_token: str | None = None
    sms_from: str | None = None

    # How often the outbox sweeper hands out due retries and abandoned deliveries.
    sweep_interval_seconds: float = Field(default=30.0, gt=0)
    # Any number of `serve` / `scheduler` processes elect one scheduler with a lease in the
    # database; a leader that dies unannounced is replaced once it runs out. Workers beat as
    # often, and /health counts a worker alive while its last beat is younger than this.
    scheduler_lease_seconds: float = Field(default=15.0, ge=1, le=600)
    # First retry delay of a push or SMS delivery; each next one doubles (with jitter), up to an
    # hour. Email retries follow email_retry_horizon_seconds instead.
    delivery_backoff_seconds: float = Field(default=30.0, gt=0)
    # How long a worker may hold a claimed delivery before another may take it over.
    delivery_lease_seconds: float = Field(default=120.0, gt=0)

    # Daily maintenance jobs run at this local hour.
    maintenance_hour: int = Field(default=3, ge=0, le=23)
    maintenance_timezone: str = "UTC"

    # The platform's jobs. Files (data exports) are written under STORAGE_DIR.
    storage_dir: str = "./var/storage"
    # Fernet keys for tokens at rest, comma-separated (the first encrypts, all decrypt); unset,
    # one is derived from SECRET_KEY.
    encryption_keys: str | None = None
    # How often due post targets are looked for (posts go out within a minute of their time).
    publish_scan_interval_seconds: float = Field(default=5.0, gt=0)
    publish_max_attempts: int = Field(default=3, ge=1, le=20)
    publish_backoff_seconds: float = Field(default=60.0, gt=0)
    # How long a publish may hold its claim on a target before another run may take it over.
    publish_lease_seconds: float = Field(default=300.0, gt=0)
    provider_timeout_seconds: float = Field(default=20.0, gt=0)
    inbox_sync_interval_minutes: int = Field(default=15, ge=1, le=60)
    metrics_interval_hours: int = Field(default=6, ge=1, le=24)
    inbox_archive_days: int = Field(default=90, ge=1)
    token_refresh_window_days: int = Field(default=7, ge=1)
    data_export_ttl_hours: int = Field(default=168, ge=1)
    data_deletion_grace_days: int = Field(default=14, ge=0)
    # How long an invitation's accept link works.
    invitation_ttl_days: int = Field(default=7, ge=1, le=90)

    # Failed-job alerts.
    alert_slack_webhook_url: str | None = None

    # Pusher webhooks (docs/realtime.md, "Webhooks") of the app above: where they are POSTed
    # (unset: none are recorded), which events (comma-separated), how many events one POST may
    # carry, and the retries (the first after WEBHOOK_BACKOFF_SECONDS, doubling with jitter up to
    # WEBHOOK_BACKOFF_CAP_SECONDS) until an event is WEBHOOK_RETRY_HORIZON_SECONDS old: a
    # receiver down for less than the horizon loses none.
    webhook_url: str | None = None
    webhook_events: str = DEFAULT_WEBHOOK_EVENTS
    webhook_batch_size: int = Field(default=100, ge=1, le=1_000)
    webhook_backoff_seconds: float = Field(default=1.0, gt=0)
    webhook_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    webhook_retry_horizon_seconds: float = Field(default=86_400.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Progressive rollout of push: "all", "admins" or a percentage 0-100.
    push_rollout: str = "all"

    unread_count_cache_ttl_seconds: int = Field(default=300, ge=1)
    idempotency_ttl_hours: int = Field(default=24, ge=1)
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)

    # Login throttling (docs/decisions.md): failed logins counted in fixed windows per account
    # (email) and per client address; over the limit a login answers 429 without checking the
    # password. A successful login clears its account's count.
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_account_window_seconds: int = Field(default=900, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_address_window_seconds: int = Field(default=60, ge=1)
    # Password checks run at once, in threads; more wait their turn, so a login flood cannot
    # starve the event loop. Unset: half the cores, at least 1 (each argon2 check already spreads
    # its 4 lanes over the cores and takes ~64 MiB).
    password_hash_concurrency: int | None = Field(default=None, ge=1, le=64)

    @model_validator(mode="after")
    def _load_apps_file(self) -> Self:
        if self.pusher_apps_file is None:
            return self
        if self.pusher_apps:
            raise ValueError("give NOTIFLOW_PUSHER_APPS or NOTIFLOW_PUSHER_APPS_FILE, not both")
        try:
            text = self.pusher_apps_file.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(
                f"NOTIFLOW_PUSHER_APPS_FILE {str(self.pusher_apps_file)!r} cannot be read: "
                f"{error.strerror or error}"
            ) from None
        self.pusher_apps = _decode_apps(text, "NOTIFLOW_PUSHER_APPS_FILE")
        return self

    @model_validator(mode="after")
    def _apps_unique(self) -> Self:
        ids = Counter([self.pusher_app_id, *(app.id for app in self.pusher_apps)])
        keys = Counter([self.pusher_app_key, *(app.key for app in self.pusher_apps)])
        for kind, counts in (("id", ids), ("key", keys)):
            twice = sorted(value for value, count in counts.items() if count > 1)
            if twice:
                raise ValueError(
                    f"NOTIFLOW_PUSHER_APPS: app {kind} {twice[0]!r} is used by more than one app "
                    f"(the default app's is NOTIFLOW_PUSHER_APP_{kind.upper()}); each app needs "
                    f"its own {kind}"
                )
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.env is not Environment.DEVELOPMENT:
            if self.secret_key == DEVELOPMENT_SECRET_KEY or len(self.secret_key) < 32:
                raise ValueError(
                    "NOTIFLOW_SECRET_KEY must be a random value of at least 32 characters outside "
                    "development (the development placeholder is refused)"
                )
            pusher_secret = self.pusher_app_secret
            if pusher_secret == DEVELOPMENT_PUSHER_SECRET or len(pusher_secret) < 16:
                raise ValueError(
                    "NOTIFLOW_PUSHER_APP_SECRET must be a random value of at least 16 characters "
                    "outside development (the development placeholder is refused)"
                )
            _refuse_predictable("NOTIFLOW_SECRET_KEY", self.secret_key, _GENERATE_RANDOM)
            _refuse_predictable("NOTIFLOW_PUSHER_APP_SECRET", pusher_secret, _GENERATE_RANDOM)
            for app in self.pusher_apps:
                setting = f"NOTIFLOW_PUSHER_APPS: the secret of app {app.id}"
                if app.secret == DEVELOPMENT_PUSHER_SECRET or len(app.secret) < 16:
                    raise ValueError(
                        f"{setting} must be a random value of at least 16 characters outside "
                        "development"
                    )
                _refuse_predictable(setting, app.secret, _GENERATE_RANDOM)
            for key in (self.encryption_keys or "").split(","):
                if key.strip():
                    _refuse_predictable("NOTIFLOW_ENCRYPTION_KEYS", key.strip(), _GENERATE_FERNET)
            if self.pusher_encryption_master_key:
                _refuse_predictable(
                    "NOTIFLOW_PUSHER_ENCRYPTION_MASTER_KEY",
                    self.pusher_encryption_master_key,
                    _GENERATE_MASTER,
                )
        if (
            self.env is Environment.PRODUCTION
            and self.mail_driver is None
            and not self.model_fields_set & _SMTP_FIELDS
        ):
            raise ValueError(
                "say how email is sent in production: NOTIFLOW_SMTP_HOST (and _PORT, _USERNAME, "
                "_PASSWORD, _TLS) for an SMTP server, or NOTIFLOW_MAIL_DRIVER=file to write each "
                "email to NOTIFLOW_MAIL_DIR"
            )
        parse_push_rollout(self.push_rollout)
        parse_webhook_events(self.webhook_events)
        development = self.env is Environment.DEVELOPMENT
        if self.webhook_url:
            check_webhook_url(self.webhook_url, development=development)
        for app in self.pusher_apps:
            setting = f"NOTIFLOW_PUSHER_APPS: app {app.id}'s"
            parse_webhook_events(app.webhook_events, setting=f"{setting} webhook_events")
            if app.webhook_url:
                check_webhook_url(
                    app.webhook_url, development=development, setting=f"{setting} webhook_url"
                )
        return self

    @property
    def mail_transport(self) -> MailDriver:
        """Where email goes: the driver named, else SMTP when any SMTP setting is given (or
        outside development), else (development) the mail folder."""
        if self.mail_driver is not None:
            return self.mail_driver
        if self.env is Environment.DEVELOPMENT and not self.model_fields_set & _SMTP_FIELDS:
            return MailDriver.FILE
        return MailDriver.SMTP

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


_SMTP_FIELDS = frozenset({"smtp_host", "smtp_port", "smtp_username", "smtp_password", "smtp_tls"})

# Below these a secret was typed, not generated ("x" * 32, "abab...", "abcdabcd..."). Random
# values clear them: 16 random hex digits fail about once in 10,000 draws, 20 (a Pusher secret)
# never did in 200,000, a token_urlsafe(32) has 4.3+ bits per character. An estimate, not proof.
MIN_SECRET_DISTINCT_CHARACTERS = 6
MIN_SECRET_BITS_PER_CHARACTER = 2.3
_GENERATE_RANDOM = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
_GENERATE_FERNET = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)
_GENERATE_MASTER = (
    'python -c "import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())"'
)


def secret_bits_per_character(value: str) -> float:
    """Shannon entropy of the value's character frequencies, in bits per character."""
    counts = Counter(value)
    return sum(n / len(value) * math.log2(len(value) / n) for n in counts.values())


def _refuse_predictable(setting: str, value: str, generate: str) -> None:
    distinct = len(set(value))
    bits = secret_bits_per_character(value) if value else 0.0
    if distinct < MIN_SECRET_DISTINCT_CHARACTERS or bits < MIN_SECRET_BITS_PER_CHARACTER:
        raise ValueError(
            f"{setting} looks typed rather than random ({distinct} distinct characters, "
            f"~{bits:.1f} bits of entropy per character; at least "
            f"{MIN_SECRET_DISTINCT_CHARACTERS} and {MIN_SECRET_BITS_PER_CHARACTER} are needed "
            f"outside development): generate one with {generate}"
        )


def parse_push_rollout(value: str) -> str | int:
    """Return ``"all"``, ``"admins"`` or a percentage; raise ``ValueError`` on anything else."""
    normalized = value.strip().lower().removesuffix("%")
    if normalized in ("all", "admins"):
        return normalized
    try:
        percent = int(normalized)
    except ValueError:
        raise ValueError(
            f"push rollout must be 'all', 'admins' or a percentage 0-100, got {value!r}"
        ) from None
    if not 0 <= percent <= 100:
        raise ValueError(f"push rollout percentage must be within 0-100, got {percent}")
    return percent


def _decode_apps(text: str | bytes, setting: str) -> list[PusherAppSettings]:
    """The apps of a JSON list; ``ValueError`` naming the setting and the first problem."""
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{setting} is not valid JSON: {error}") from None
    if not isinstance(parsed, list):
        raise ValueError(f'{setting} must be a JSON list of apps ([{{"id", "key", "secret"}}])')
    try:
        return _APPS.validate_python(parsed)
    except ValidationError as error:
        first = error.errors()[0]
        index, *field = first["loc"]
        where = f"[{index}]" + "".join(f".{part}" for part in field)
        problem = str(first["msg"]).removeprefix("Value error, ")
        raise ValueError(f"{setting}{where}: {problem}") from None


def parse_webhook_events(value: str, setting: str = "NOTIFLOW_WEBHOOK_EVENTS") -> frozenset[str]:
    """The webhook event names of a comma-separated list; raise ``ValueError`` on an unknown one."""
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(names - set(WEBHOOK_EVENTS))
    if unknown:
        raise ValueError(
            f"{setting}: unknown event {', '.join(unknown)}; known: {', '.join(WEBHOOK_EVENTS)}"
        )
    return names


def check_webhook_url(
    url: str, *, development: bool, setting: str = "NOTIFLOW_WEBHOOK_URL"
) -> None:
    """Refuse a webhook URL that is not an absolute http(s) URL; outside development also one
    that sends events (client events carry what users typed) in clear text over a network: plain
    http is for a receiver on the same machine only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{setting} must be an absolute http(s) URL, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{setting} must not carry credentials: webhooks are authenticated by their "
            "X-Pusher-Signature"
        )
    if not development and parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            f"{setting} must use https outside development (plain http is accepted "
            f"for a loopback receiver only), got {url!r}"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()
