"""Admin UI settings (env prefix ``LEARN_GATEWAY_UI_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class UiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_GATEWAY_UI_", extra="ignore")

    session_ttl: float = Field(default=8 * 3600, gt=0, description="seconds a sign-in lasts (absolute, not idle)")
    api_url: str | None = Field(
        default=None,
        description="base URL of the admin API the UI calls; unset: this gateway, on the address the request came in",
    )
    api_timeout: float = Field(default=60.0, gt=0, description="seconds to wait for an admin API answer")
    sign_in_max_failures: int = Field(default=5, ge=1, description="failed sign-ins per client IP per window")
    sign_in_max_account_failures: int = Field(
        default=50, ge=1, description="failed sign-ins per window from all addresses together (the admin account)")
    sign_in_window: float = Field(default=900.0, gt=0, description="seconds the failed sign-ins are counted over")
