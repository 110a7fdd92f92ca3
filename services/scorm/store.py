"""Scorm tables and the small queries shared by its use cases.

- ``scorm_packages`` / ``scorm_scos``: uploaded packages (their import state) and the SCO list of ready ones;
- ``blobs`` / ``blob_chunks``: package files when the blob store is the database (shared.blobstore);
- ``enrollments``, ``courses``, ``course_activities``, ``users``, ``tenants``: read models from ``enrollment.*``,
  ``course.*``, ``user.upserted`` and ``tenant.updated``;
- ``runtime_sessions``: one row per launch (= attempt): what was launched and its CMI state.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from shared.blobstore import blob_tables
from shared.db import BigId, Timestamp

metadata = sa.MetaData()

scorm_packages = sa.Table(
    "scorm_packages", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("tenant_slug", sa.String(63), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("title_given", sa.Boolean, nullable=False),
    sa.Column("scorm_version", sa.String(16), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("organization_identifier", sa.Text, nullable=True),
    sa.Column("warnings", sa.JSON, nullable=False),
    sa.Column("files", sa.Integer, nullable=True),
    sa.Column("upload_path", sa.Text, nullable=True),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_until", Timestamp, nullable=True),
    sa.Column("import_attempts", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_scorm_packages_tenant", "tenant_id", "id"),
    sa.Index("ix_scorm_packages_status", "status"),
)

scorm_scos = sa.Table(
    "scorm_scos", metadata,
    sa.Column("package_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("identifier", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("launch_url", sa.Text, nullable=False),
    sa.Column("parameters", sa.Text, nullable=True),
    sa.Column("mastery_score", sa.Float, nullable=True),
    sa.Column("passing_score_scaled", sa.Float, nullable=True),
    sa.Column("parent_identifier", sa.Text, nullable=True),
    sa.Column("resource_identifier", sa.Text, nullable=False),
    sa.Column("objective_ids", sa.JSON, nullable=False),
    sa.Column("completion_threshold", sa.Float, nullable=True),
    sa.Column("launch_data", sa.Text, nullable=True),
)

blobs, blob_chunks = blob_tables(metadata)

enrollments = sa.Table(
    "enrollments", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("enrollment_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("course_version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

courses = sa.Table(
    "courses", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

course_activities = sa.Table(
    "course_activities", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("course_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("activity_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("scorm_package_id", sa.BigInteger, nullable=True),
    sa.Column("sco_identifier", sa.Text, nullable=True),
    sa.Column("passing_score_scaled", sa.Float, nullable=True),
)

#: the directory's names (``user.upserted``), for the learner name a launch hands the SCO; no email: unused here
users = sa.Table(
    "users", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

#: tenant status (``tenant.updated``): a suspended tenant's runtime tokens end (docs/scorm-runtime.md)
tenants = sa.Table(
    "tenants", metadata,
    sa.Column("tenant_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

runtime_sessions = sa.Table(
    "runtime_sessions", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.BigInteger, nullable=False),
    sa.Column("tenant_slug", sa.String(63), nullable=False),
    sa.Column("enrollment_id", sa.BigInteger, nullable=False),
    sa.Column("activity_id", sa.BigInteger, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("course_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("package_id", sa.BigInteger, nullable=True),
    sa.Column("sco_identifier", sa.Text, nullable=True),
    sa.Column("standard", sa.String(8), nullable=False),
    sa.Column("launch_path", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("mastery_score", sa.Float, nullable=True),
    sa.Column("passing_score_scaled", sa.Float, nullable=True),
    sa.Column("completion_threshold", sa.Float, nullable=True),
    sa.Column("objective_ids", sa.JSON, nullable=False),
    sa.Column("launch_data", sa.Text, nullable=True),
    sa.Column("mode", sa.String(8), nullable=False),
    #: the learner's directory name when the launch started ("" when unknown); fixed for the whole launch
    sa.Column("learner_name", sa.Text, nullable=False, server_default=""),
    #: an admin's preview of a SCO: no enrollment behind it, so its commits send no events
    sa.Column("preview", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cmi", sa.JSON, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("reported_session_seconds", sa.Float, nullable=False),
    sa.Column("prior_total_seconds", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index("ix_runtime_sessions_activity", "tenant_id", "enrollment_id", "activity_id", "id"),
)


def now() -> datetime:
    return datetime.now(UTC)
