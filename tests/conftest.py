"""Shared pytest configuration: keep tests away from the user's caches and environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/envbuild.py and friends


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets its own lfm-pack cache so warm/cold behaviour is deterministic."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME"):
        monkeypatch.delenv(var, raising=False)


def lfm_pack_cmd() -> list[str]:
    """How tests run the real CLI: the installed module under the test interpreter."""
    return [sys.executable, "-m", "lfm_pack"]


os.environ.setdefault("LFM_TEST_ROOT", str(ROOT))
