from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.config import DEFAULT_PORTS, ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_GATEWAY_", extra="ignore")
    service_name = "gateway"
    port: int = 8080
    catalog_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['catalog']}"
    enrollment_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['enrollment']}"
    certificates_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['certificates']}"
    scorm_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['scorm']}"

    def upstreams(self) -> dict[str, str]:
        return {
            "catalog": self.catalog_url,
            "enrollment": self.enrollment_url,
            "certificates": self.certificates_url,
            "scorm": self.scorm_url,
        }
