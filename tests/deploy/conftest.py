"""Fixtures for the deployment artefacts under deploy/."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import OVERLAYS, Manifest, render_overlay


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """Every Kubernetes overlay rendered once by kustomize: overlay name -> its objects."""
    return {name: render_overlay(name) for name in OVERLAYS}
