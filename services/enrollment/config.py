from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class EnrollmentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_ENROLLMENT_", extra="ignore")
    service_name = "enrollment"
    port: int = 8082
    sweeper_enabled: bool = True
    sweep_interval: float = Field(default=5.0, gt=0, description="seconds between expiry sweeps")
    sweep_batch_size: int = Field(default=200, ge=1, le=5000)
    consumer_concurrency: int = Field(
        default=3, ge=1, le=64,
        description="consumer transactions at once per queue; each holds a database connection, so leave most of "
                    "the pool (2 × LEARN_DB_POOL_SIZE) to HTTP requests")
    consumer_batch_size: int = Field(default=32, ge=1, le=256, description="deliveries per consumer transaction")
