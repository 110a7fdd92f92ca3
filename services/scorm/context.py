"""What the scorm service's handlers share besides the database (``uow.deps``): settings, blob store, tokens,
templates."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from aiohttp import web

from services.scorm.config import ScormSettings
from services.scorm.runtime.cmi import CmiLimits
from services.scorm.runtime.tokens import RuntimeTokens
from shared.blobstore import BlobStore, choose_blob_store
from shared.db import Database

PACKAGE_ROOT = Path(__file__).parent
TEMPLATES_DIR = PACKAGE_ROOT / "templates"
STATIC_DIR = PACKAGE_ROOT / "static"


@dataclass
class ScormContext:
    settings: ScormSettings
    tokens: RuntimeTokens
    templates: jinja2.Environment
    _store: BlobStore | None = None
    _wake: asyncio.Event | None = field(default=None, repr=False)

    @functools.cached_property
    def limits(self) -> CmiLimits:
        """The CMI caps of the settings (``cmi_limits()``), built once: every commit checks against them."""
        return self.settings.cmi_limits()

    def blob_store(self, db: Database) -> BlobStore:
        """Package files: the service's own database on PostgreSQL, files under the data dir embedded."""
        if self._store is None:
            self._store = choose_blob_store(self.settings.blob_store, db, self.settings.blob_path)
        return self._store

    @property
    def import_wanted(self) -> asyncio.Event:
        """Set by an upload so that an idle importer starts at once instead of at its next poll."""
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake


SCORM_KEY = web.AppKey("scorm", ScormContext)


def build_context(settings: ScormSettings) -> ScormContext:
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    return ScormContext(settings=settings, tokens=RuntimeTokens(settings.common.resolved_internal_secret()),
                        templates=templates)


def package_prefix(tenant_id: int, package_id: int) -> str:
    return f"packages/{tenant_id}/{package_id}"
