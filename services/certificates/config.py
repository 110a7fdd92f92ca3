from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class CertificatesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_CERTIFICATES_", extra="ignore")
    service_name = "certificates"
    port: int = 8083
