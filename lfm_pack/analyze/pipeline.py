"""Run the analyze stage end to end: probe -> targets -> reach -> mapping -> closure.

The only place that sequences the analyze modules; each of them stays ignorant of the others'
I/O so they can be tested alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lfm_pack import __version__
from lfm_pack.analyze.closure import compute_closure
from lfm_pack.analyze.distributions import load_index
from lfm_pack.analyze.environment import probe
from lfm_pack.analyze.mapping import map_imports
from lfm_pack.analyze.reach import reach
from lfm_pack.analyze.reach_metadata import lookup_distribution
from lfm_pack.analyze.targets import parse_target
from lfm_pack.errors import TargetError
from lfm_pack.models import Analysis, EnvInfo, Finding


def _dedup_findings(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    return tuple(dict.fromkeys(findings))


def analyze_in(raw_targets: Sequence[str], env: EnvInfo, cwd: str | None = None) -> Analysis:
    """Analyze `raw_targets` against an already probed environment."""
    if not raw_targets:
        raise TargetError("no target given", hint="e.g. lfm-pack analyze script.py:func")
    here = os.path.abspath(cwd or os.getcwd())
    specs = tuple(parse_target(raw, env, here) for raw in raw_targets)
    reached = reach(specs, env)
    index = load_index(env)
    resolved, map_findings = map_imports(reached, env, index)
    lookups = [
        name
        for f in reached.findings
        if f.code == "metadata-lookup" and (name := lookup_distribution(f.message)) is not None
    ]
    packages, closure_findings = compute_closure(resolved, env, index, metadata_lookups=lookups)
    return Analysis(
        targets=specs,
        env=env,
        imports=tuple(r for r in resolved if r.kind != "unresolved"),
        local_files=reached.local_files,
        local_roots=reached.local_roots,
        unresolved=tuple(r for r in resolved if r.kind == "unresolved"),
        findings=_dedup_findings(
            (*reached.findings, *index.findings, *map_findings, *closure_findings)
        ),
        packages=packages,
        placeholders=reached.placeholders,
        extra=(("tool", f"lfm-pack {__version__}"),),
    )


def run_analysis(
    raw_targets: Sequence[str],
    python: str | None = None,
    prefix: str | None = None,
    cwd: str | None = None,
) -> Analysis:
    """Probe the target environment (subprocess) and analyze the targets in it."""
    return analyze_in(raw_targets, probe(python, prefix), cwd)
