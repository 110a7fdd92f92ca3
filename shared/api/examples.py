"""One example answer per operation (by operationId), taken from real answers recorded in the test suite
(``LEARN_OPENAPI_RECORD=<file> pytest tests/e2e``; tests/openapi/conformance.py writes them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLES: dict[str, Any] = json.loads((Path(__file__).with_name("examples.json")).read_text())
