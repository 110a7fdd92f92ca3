from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class ScormSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_SCORM_", extra="ignore")
    service_name = "scorm"
    port: int = 8084
