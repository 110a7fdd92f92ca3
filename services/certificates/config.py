from __future__ import annotations

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class CertificatesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEARN_CERTIFICATES_", extra="ignore")
    service_name = "certificates"
    port: int = 8083

    render_workers: int = Field(default_factory=_cpu_count, ge=1, le=64,
                                description="PDF render processes (LEARN_CERTIFICATES_RENDER_WORKERS)")
    blob_store: Literal["auto", "database", "filesystem"] = Field(
        default="auto", description="auto: the database with PostgreSQL, files under <data_dir> otherwise")
    regeneration_enabled: bool = True
    regeneration_batch_size: int = Field(default=32, ge=1, le=1000)
    regeneration_lanes: int = Field(default=0, ge=0, le=64,
                                    description="concurrent batch loops; 0 = render_workers + 1")
    regeneration_poll_interval: float = Field(default=1.0, gt=0)
    consumer_batch_size: int = Field(
        default=16, ge=1, le=64,
        description="deliveries per consumer batch: rendered at once over every worker, before one short "
                    "transaction that writes them (issuing.py)")
    consumer_concurrency: int = Field(
        default=4, ge=1, le=128,
        description="batches at once per queue; an issuing transaction holds a database connection only while it "
                    "writes (never while a render waits), so this plus the regeneration lanes (which do hold one "
                    "while their batch renders) should stay within 2 × LEARN_DB_POOL_SIZE with room for HTTP")

    @property
    def lanes(self) -> int:
        return self.regeneration_lanes or self.render_workers + 1
