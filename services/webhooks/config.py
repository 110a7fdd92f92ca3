"""Webhooks settings (env prefix ``LEARN_WEBHOOKS_``)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.config import DEFAULT_PORTS, ServiceSettings

IPNetwork = IPv4Network | IPv6Network

#: seconds before each retry: 5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h (about 3 days in all)
DEFAULT_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,36000,36000,36000,36000,36000,36000"


class WebhooksSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_WEBHOOKS_", extra="ignore")
    service_name = "webhooks"
    port: int = DEFAULT_PORTS["webhooks"]

    allow_http: bool = Field(default=False, description="accept http:// endpoints (local tests only)")
    allowed_networks: str = Field(
        default="", description="CIDRs endpoints may resolve to although private, loopback or link-local "
                                "(comma or space separated); default none")
    ca_file: str | None = Field(default=None, description="extra CA bundle trusted for endpoints (tests)")
    timeout: float = Field(default=10.0, gt=0, le=60, description="seconds one delivery attempt may take")
    retry_schedule: str = Field(
        default=DEFAULT_RETRY_SCHEDULE, description="seconds before each retry (comma separated); then it fails")
    jitter: float = Field(default=0.2, ge=0, le=1, description="each retry delay varies by up to this fraction")
    disable_after: float = Field(default=5 * 86400.0, gt=0,
                                 description="an endpoint failing for this many seconds in a row is disabled")
    secret_overlap: float = Field(default=86400.0, ge=0,
                                  description="seconds the previous secret still signs after a rotation")
    retention: float = Field(default=30 * 86400.0, gt=0, description="seconds messages and attempts are kept")
    endpoint_concurrency: int = Field(default=4, ge=1, le=100,
                                      description="attempts in flight per endpoint per process")
    endpoint_rate: float = Field(default=20.0, gt=0, description="attempts per second per endpoint per process")
    concurrency: int = Field(default=64, ge=1, le=1000, description="attempts in flight per process")
    poll_interval: float = Field(default=0.5, gt=0, description="seconds between looks for due messages")
    consumer_concurrency: int = Field(
        default=2, ge=1, le=64,
        description="consumer transactions at once on webhooks.events; each holds a database connection")
    consumer_batch_size: int = Field(default=64, ge=1, le=256, description="deliveries per consumer transaction")
    response_capture: int = Field(default=1024, ge=0, le=65536, description="response bytes kept per attempt")

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        delays = parse_schedule(value)
        if not delays or any(d < 0 for d in delays):
            raise ValueError("needs at least one delay, none negative")
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # a bad CIDR stops the start, naming it
        return value

    @property
    def retries(self) -> tuple[float, ...]:
        return parse_schedule(self.retry_schedule)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.allowed_networks)


def parse_schedule(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in value.replace(" ", ",").split(",") if part)
    except ValueError:
        raise ValueError(f"not a list of seconds: {value!r}") from None


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ip_network(part, strict=False) for part in value.replace(",", " ").split())
    except ValueError as exc:
        raise ValueError(str(exc)) from None
