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
