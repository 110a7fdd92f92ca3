"""Gateway settings (env prefix ``LEARN_GATEWAY_``; the admin token and key pepper keep their documented names)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.gateway.proxy import TrustedProxies
from shared.config import DEFAULT_PORTS, ServiceSettings, _file_secret


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_GATEWAY_", extra="ignore", populate_by_name=True)
    service_name = "gateway"
    port: int = 8080
    content_port: int = Field(default=8085, ge=0, le=65535,
                              description="the content origin's listener (LEARN_CONTENT_URL); 0: none")
    catalog_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['catalog']}"
    enrollment_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['enrollment']}"
    certificates_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['certificates']}"
    scorm_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['scorm']}"
    webhooks_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['webhooks']}"

    admin_token: str | None = Field(
        default=None, validation_alias=AliasChoices("LEARN_ADMIN_TOKEN", "admin_token"),
        description="bearer token of the admin API; unset: read or created in <data_dir>/admin_token",
    )
    api_key_pepper: str | None = Field(
        default=None, validation_alias=AliasChoices("LEARN_API_KEY_PEPPER", "api_key_pepper"),
        description="HMAC key for API-key hashes; unset: read or created in <data_dir>/api_key_pepper",
    )
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="SCORM zip upload limit")
    admin_json_body_limit: int = Field(default=8 * 1024 * 1024, ge=1,
                                       description="admin JSON bodies (templates carry base64 images)")
    # Token bucket per API key (see docs/gateway.md): in Redis, shared by every replica, when LEARN_REDIS_URL is set;
    # else (and while Redis does not answer) per replica.
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    rate_limit_burst: int = Field(default=100, ge=1)
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("LEARN_REDIS_URL", "redis_url"),
        description="redis://host:port/db for the rate limit shared by the replicas; unset: per replica",
    )
    redis_prefix: str = Field(
        default="learn:", validation_alias=AliasChoices("LEARN_REDIS_PREFIX", "redis_prefix"), max_length=100,
        description="prefix of the gateway's Redis keys (several deployments may share one Redis)",
    )
    redis_timeout: float = Field(default=0.25, gt=0, le=10,
                                 validation_alias=AliasChoices("LEARN_REDIS_TIMEOUT", "redis_timeout"),
                                 description="seconds a Redis call may take before the replica decides alone")
    key_cache_ttl: float = Field(default=5.0, gt=0, le=5.0, description="a revoked key dies within this")
    last_used_resolution: float = Field(default=60.0, gt=0, description="last_used_at is written at most this often")
    upstream_connect_timeout: float = Field(default=2.0, gt=0)
    upstream_read_timeout: float = Field(default=30.0, gt=0, description="no byte from the service for this long")
    upstream_pool_size: int = Field(default=256, ge=1, description="pooled connections per service")
    access_log: bool = Field(default=True, description="one structlog line per request")
    trusted_proxies: str = Field(
        default="", validation_alias=AliasChoices("LEARN_TRUSTED_PROXIES", "trusted_proxies"),
        description="CIDRs of proxies whose X-Forwarded-For is believed (comma or space separated); default none",
    )
    admin_auth_max_failures: int = Field(default=10, ge=1,
                                         description="wrong admin tokens per client IP per window before 429")
    admin_auth_window: float = Field(default=300.0, gt=0, description="seconds admin-token failures are counted")
    workers: int = Field(default=1, ge=1, description="processes sharing the port (SO_REUSEPORT)")
    rabbitmq_management_url: str | None = Field(
        default=None, validation_alias=AliasChoices("LEARN_RABBITMQ_MANAGEMENT_URL", "rabbitmq_management_url"),
        description="RabbitMQ management HTTP API with an administrator's credentials "
                    "(http://user:pass@host:15672), for the tenants' AMQP subscribers; unset: none",
    )
    rabbitmq_public_url: str | None = Field(
        default=None, validation_alias=AliasChoices("LEARN_RABBITMQ_PUBLIC_URL", "rabbitmq_public_url"),
        description="amqp(s)://host:port external subscribers connect to; unset: the host of LEARN_AMQP_URL",
    )
    consistency: bool = Field(default=True, description="read-your-writes across services (ADR 0010)")
    consistency_window: float = Field(default=30.0, gt=0, le=3600,
                                      description="how long a write's events are waited for at most")

    smtp_url: str | None = Field(
        default=None, validation_alias=AliasChoices("LEARN_SMTP_URL", "smtp_url"),
        description="smtp://[user:password@]host[:port] (smtps:// for TLS) to mail staff invitations and password "
                    "resets; unset: the link is given to the caller",
    )
    mail_from: str = Field(default="mobieusLearn <no-reply@localhost>", description="sender of staff mail")
    staff_link_ttl: float = Field(default=72 * 3600, gt=0, le=30 * 24 * 3600,
                                  description="seconds an invitation or password-reset link stays valid")
    staff_session_ttl: float = Field(default=8 * 3600, gt=0,
                                     description="seconds a staff sign-in (UI or admin API session) lasts")
    staff_sign_in_max_failures: int = Field(default=5, ge=1,
                                            description="failed staff sign-ins per account (and per IP) per window")
    staff_sign_in_window: float = Field(default=900.0, gt=0, description="seconds staff sign-in failures count")

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        TrustedProxies.parse(value)  # a bad CIDR stops the start, naming it
        return value

    def upstreams(self) -> dict[str, str]:
        return {
            "catalog": self.catalog_url,
            "enrollment": self.enrollment_url,
            "certificates": self.certificates_url,
            "scorm": self.scorm_url,
            "webhooks": self.webhooks_url,
        }

    def resolved_admin_token(self) -> str:
        if self.admin_token:
            return self.admin_token
        return _file_secret(Path(self.common.data_dir) / "admin_token")

    def resolved_pepper(self) -> str:
        if self.api_key_pepper:
            return self.api_key_pepper
        return _file_secret(Path(self.common.data_dir) / "api_key_pepper")
