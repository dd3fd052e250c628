"""The analyze pipeline end to end on fake environments: stages wired in the right order."""

from __future__ import annotations

from pathlib import Path

from envbuild import FakeDist, fake_env

from lfm_pack.analyze.pipeline import run_analysis

JOB = """
import importlib.metadata
import requests  # only other() uses it


def version_of_plugin():
    return importlib.metadata.version("plugin-dist")


def other():
    return requests.get("http://example.invalid")
"""


def test_metadata_lookup_ships_the_distribution_and_unreached_imports_do_not(
    tmp_path: Path,
) -> None:
    env = fake_env(
        tmp_path,
        [
            FakeDist("plugin-dist", "1.2.0", {"plugin_mod/__init__.py": ""}),
            FakeDist("requests", "2.31.0", {"requests/__init__.py": ""}),
        ],
    )
    (tmp_path / "job.py").write_text(JOB)
    a = run_analysis(["job.py:version_of_plugin"], prefix=str(env), cwd=str(tmp_path))
    names = {p.name: p for p in a.packages}
    assert set(names) == {"plugin-dist"}
    assert names["plugin-dist"].direct and not names["plugin-dist"].optional
    assert "metadata-lookup" in {f.code for f in a.findings}
    assert {p.module for p in a.placeholders} == {"requests"}
