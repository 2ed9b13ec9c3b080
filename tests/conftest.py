"""Shared fixtures: the ICT head is loaded once per session (26k vertices, 23 MB)."""

from __future__ import annotations

import pytest

from engines.assets import AssetMissingError
from engines.ict_model import ICTFaceModel


@pytest.fixture(scope="session")
def ict() -> ICTFaceModel:
    try:
        return ICTFaceModel()
    except AssetMissingError as exc:  # a broken checkout, not a reason to skip
        pytest.fail(str(exc))
