from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class CatalogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_CATALOG_", extra="ignore")
    service_name = "catalog"
    port: int = 8081
