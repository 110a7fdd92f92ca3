from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class EnrollmentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_ENROLLMENT_", extra="ignore")
    service_name = "enrollment"
    port: int = 8082
