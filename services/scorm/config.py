from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.scorm.manifest.zip_safety import ImportLimits
from services.scorm.runtime.cmi import MAX_ELEMENTS, MIN_ITEMS, MIN_NESTED_ITEMS, CmiLimits
from shared.config import ServiceSettings


class ScormSettings(ServiceSettings):
    """``LEARN_SCORM_*``: uploads, import limits, the package blob store and runtime tokens."""

    model_config = SettingsConfigDict(env_prefix="LEARN_SCORM_", extra="ignore")
    service_name = "scorm"
    port: int = 8084

    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="zip upload cap (413 beyond)")
    resumable_upload_ttl: int = Field(default=24 * 3600, ge=60,
                                      description="seconds an unfinished resumable upload is kept")
    max_entries: int = Field(default=20_000, ge=1)
    max_uncompressed_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_ratio: float = Field(default=200.0, gt=1)
    max_manifest_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: "auto": the service's own database with PostgreSQL, files under <data_dir>/scorm-blobs embedded
    blob_store: Literal["auto", "database", "filesystem"] = "auto"
    blob_dir: Path | None = Field(default=None, description="file store root; default <data_dir>/scorm-blobs")
    upload_dir: Path | None = Field(default=None, description="default <data_dir>/scorm-uploads")
    import_concurrency: int = Field(default=2, ge=1, le=16)
    import_poll_interval: float = Field(default=5.0, gt=0)
    #: a worker holds a package for this long and renews it while importing; a dead worker's package is
    #: picked up again once its lease runs out
    import_lease_seconds: float = Field(default=30.0, gt=0)
    import_max_attempts: int = Field(default=3, ge=1)
    token_ttl: int = Field(default=4 * 3600, ge=60, description="runtime token lifetime in seconds")
    importer_enabled: bool = True
    #: items a CMI collection may hold (objectives, interactions, comments_from_learner): never below the SCORM
    #: 2004 smallest permitted maximum (250 for interactions and comments, 100 for objectives)
    cmi_max_items: int = Field(default=1000, ge=MIN_ITEMS, le=100_000)
    #: items of an interaction's own collections (its objectives, its correct responses): SPM 10
    cmi_max_nested_items: int = Field(default=100, ge=MIN_NESTED_ITEMS, le=10_000)
    #: elements in one commit (a 200-question test with 10 fields each is 2,000)
    cmi_max_elements: int = Field(default=MAX_ELEMENTS, ge=1000, le=100_000)

    def cmi_limits(self) -> CmiLimits:
        return CmiLimits(max_items=self.cmi_max_items, max_nested_items=self.cmi_max_nested_items,
                         max_elements=self.cmi_max_elements)

    def import_limits(self) -> ImportLimits:
        return ImportLimits(
            max_entries=self.max_entries,
            max_uncompressed_bytes=self.max_uncompressed_bytes,
            max_ratio=self.max_ratio,
            max_manifest_bytes=self.max_manifest_bytes,
        )

    @property
    def upload_path(self) -> Path:
        return self.upload_dir or self.common.data_dir / "scorm-uploads"

    @property
    def blob_path(self) -> Path:
        return self.blob_dir or self.common.data_dir / "scorm-blobs"
