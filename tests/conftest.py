"""Shared fixtures: the reference vectors in ``../shared`` (relative to the repository root)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NNCABAC_SHARED", ROOT.parent / "shared"))
VECTORS = SHARED / "vectors"


def load_index() -> dict[str, Any]:
    path = VECTORS / "index.json"
    if not path.exists():
        pytest.fail(f"reference vectors not found at {path} (set NNCABAC_SHARED)")
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def vector_index() -> dict[str, Any]:
    return load_index()
