"""On-disk cache of per-file unit graphs, so a warm analysis never parses a file again.

libcst's parse + scope resolution costs ~0.3 ms per line; a summary is a pure function of
(source bytes, guard environment, summariser version and code, lfm-pack version), so that
tuple is the key. Entries are written atomically (temp + rename); a corrupt or foreign entry is ignored and
rebuilt, never trusted. Location: `${XDG_CACHE_HOME:-~/.cache}/lfm-pack/reach/`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from functools import lru_cache
from pathlib import Path

from lfm_pack._version import __version__
from lfm_pack.analyze.reach_summary import (
    SUMMARY_VERSION,
    FileSummary,
    GuardEnv,
    summary_from_json,
    summary_to_json,
)
from lfm_pack.jsonio import atomic_open
from lfm_pack.paths import user_cache_dir


def cache_dir() -> Path:
    return user_cache_dir("reach")


@lru_cache(maxsize=1)
def _summariser_digest() -> str:
    """Hash of the code that builds summaries, so editing it invalidates the cache by itself
    (a forgotten SUMMARY_VERSION bump must not serve stale graphs)."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in (
        "reach_units.py",
        "reach_guards.py",
        "reach_hints.py",
        "reach_summary.py",
        "parse_guard.py",
        "reach_metadata.py",
    ):
        with contextlib.suppress(OSError):
            h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def cache_key(source: bytes, genv: GuardEnv) -> str:
    h = hashlib.sha256(source)
    h.update(f"\0{genv.key()}\0{SUMMARY_VERSION}\0{__version__}\0{_summariser_digest()}".encode())
    return h.hexdigest()


def load(key: str) -> FileSummary | None:
    path = cache_dir() / key[:2] / f"{key}.json"
    try:
        with open(path, encoding="utf-8") as fh:
            return summary_from_json(json.load(fh))
    except FileNotFoundError:
        return None
    except Exception:  # corrupt, truncated or from another format: rebuild it
        return None


def store(key: str, summary: FileSummary) -> None:
    """Best effort: a read-only or full cache directory must not fail the analysis."""
    path = cache_dir() / key[:2] / f"{key}.json"
    with contextlib.suppress(OSError), atomic_open(path, "w") as fh:
        json.dump(summary_to_json(summary), fh, separators=(",", ":"))


def summarize_cached(source_bytes: bytes, text: str, genv: GuardEnv) -> FileSummary:
    """The summary of `text`, from the cache when possible (libcst is imported only on a miss)."""
    key = cache_key(source_bytes, genv)
    hit = load(key)
    if hit is not None:
        return hit
    from lfm_pack.analyze.reach_units import summarize

    summary = summarize(text, genv)
    store(key, summary)
    return summary
