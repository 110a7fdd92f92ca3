"""The path of ``enrollment.completed`` → a certificate through the certificates service's files, as it runs
(docs/architecture.md, "Measured"): at most five files, top to bottom, never back to a file it left."""

from __future__ import annotations

from services.certificates import handlers
from tests.certificates.test_certificates_harness import ids, running_service
from tests.support.callpath import CallPath


async def test_issuing_a_certificate_crosses_at_most_five_files_top_to_bottom(test_env):
    async with running_service(test_env) as service:
        path = CallPath(handlers.issue_certificate)
        enrollment = next(ids)
        with path.recording():
            await service.publish(service.completion(enrollment, months=24))
            await service.issued(enrollment)

    assert path.files[0] == "services/certificates/handlers.py", path.files
    assert "services/certificates/store.py" in path.files and "services/certificates/events.py" in path.files
    assert len(path.files) <= 5, path.files
    assert path.returns() == [] and path.climbs() == [], (path.returns(), path.climbs())
