"""`Analysis` <-> JSON (schema `lfm-pack.analysis/1`).

The JSON that `lfm-pack analyze --json` prints is also the lock `lfm-pack pack --lock` consumes
(analyze on a laptop, pack in CI), so it carries everything pack needs: the probed environment,
the targets, local files and placeholders. Keys documented in the README are a contract: add
freely, never rename. `editables` lists the editable installs followed as local code (style,
roots, mode, reason); `excluded` (in the lock written beside a pack) the closure members that
pack's options left out, with the reason: that lock describes the archive.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lfm_pack._version import __version__
from lfm_pack.analyze.environment import env_to_json, from_probe_json
from lfm_pack.errors import InputFileError
from lfm_pack.models import (
    SCHEMA_ANALYSIS,
    Analysis,
    EditableSource,
    Exclusion,
    Finding,
    ImportSite,
    Location,
    Package,
    Placeholder,
    ResolvedImport,
    TargetSpec,
)


def _loc(loc: Location | None) -> dict[str, Any] | None:
    if loc is None:
        return None
    return {"path": loc.path, "line": loc.line, "column": loc.column}


def _unloc(d: dict[str, Any] | None) -> Location | None:
    if d is None:
        return None
    return Location(d["path"], int(d["line"]), int(d.get("column", 0)))


def _import(r: ResolvedImport) -> dict[str, Any]:
    s = r.site
    return {
        "module": s.module,
        "location": _loc(s.location),
        "via": list(s.via),
        "optional": s.optional,
        "dynamic": s.dynamic,
        "hint": s.hint,
        "kind": r.kind,
        "file": r.file,
        "distribution": r.distribution,
    }


def _unimport(d: dict[str, Any]) -> ResolvedImport:
    loc = _unloc(d["location"])
    assert loc is not None
    site = ImportSite(
        module=d["module"],
        location=loc,
        via=tuple(d.get("via", ())),
        optional=bool(d.get("optional", False)),
        dynamic=bool(d.get("dynamic", False)),
        hint=d.get("hint"),
    )
    return ResolvedImport(site, d["kind"], d.get("file"), d.get("distribution"))


def finding_to_json(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "message": f.message,
        "location": _loc(f.location),
        "severity": f.severity,
    }


def _unfinding(d: dict[str, Any]) -> Finding:
    return Finding(d["code"], d["message"], _unloc(d.get("location")), d.get("severity", "warning"))


def analysis_to_json(a: Analysis) -> dict[str, Any]:
    """The analysis report / lock as plain JSON data."""
    return {
        "schema": SCHEMA_ANALYSIS,
        "tool": f"lfm-pack {__version__}",
        "targets": [
            {
                "raw": t.raw,
                "kind": t.kind,
                "path": t.path,
                "module": t.module,
                "qualname": t.qualname,
            }
            for t in a.targets
        ],
        "python": {"version": a.env.version_str, "executable": a.env.executable},
        "environment": {"prefix": a.env.prefix, "kind": a.env.kind, "probe": env_to_json(a.env)},
        "imports": [_import(r) for r in a.imports],
        "local_files": list(a.local_files),
        "local_roots": list(a.local_roots),
        "placeholders": [
            {
                "path": p.path,
                "line": p.line,
                "end_line": p.end_line,
                "module": p.module,
                "names": list(p.names),
            }
            for p in a.placeholders
        ],
        "unresolved": [_import(r) for r in a.unresolved],
        "findings": [finding_to_json(f) for f in a.findings],
        "packages": [
            {
                "name": p.name,
                "version": p.version,
                "source": p.source,
                "direct": p.direct,
                "required_by": list(p.required_by),
                "optional": p.optional,
                "requirement": p.requirement,
                "build": p.build,
            }
            for p in a.packages
        ],
        "editables": [
            {
                "name": e.name,
                "version": e.version,
                "style": e.style,
                "url": e.url,
                "metadata_path": e.metadata_path,
                "roots": list(e.roots),
                "names": list(e.names),
                "mode": e.mode,
                "reason": e.reason,
            }
            for e in a.editables
        ],
        "excluded": [
            {"name": x.name, "version": x.version, "reason": x.reason} for x in a.excluded
        ],
        "extra": dict(a.extra),
    }


def analysis_from_json(d: dict[str, Any], origin: str = "<lock>") -> Analysis:
    """Rebuild an Analysis from `analysis_to_json` output; InputFileError when it is not one."""
    if not isinstance(d, dict) or d.get("schema") != SCHEMA_ANALYSIS:
        found = d.get("schema") if isinstance(d, dict) else type(d).__name__
        raise InputFileError(
            f"{origin} is not an lfm-pack analysis (schema {found!r}, expected {SCHEMA_ANALYSIS!r})",
            hint="create one with: lfm-pack analyze TARGET --json > FILE",
        )
    try:
        return Analysis(
            targets=tuple(
                TargetSpec(t["raw"], t["kind"], t["path"], t.get("module"), t.get("qualname"))
                for t in d["targets"]
            ),
            env=from_probe_json(d["environment"]["probe"]),
            imports=tuple(_unimport(i) for i in d["imports"]),
            local_files=tuple(d.get("local_files", ())),
            local_roots=tuple(d.get("local_roots", ())),
            unresolved=tuple(_unimport(i) for i in d.get("unresolved", ())),
            findings=tuple(_unfinding(f) for f in d.get("findings", ())),
            packages=tuple(
                Package(
                    name=p["name"],
                    version=p["version"],
                    source=p["source"],
                    direct=bool(p["direct"]),
                    required_by=tuple(p.get("required_by", ())),
                    optional=bool(p.get("optional", False)),
                    requirement=p.get("requirement"),
                    build=p.get("build"),
                )
                for p in d["packages"]
            ),
            placeholders=tuple(
                Placeholder(
                    p["path"], int(p["line"]), int(p["end_line"]), p["module"], tuple(p["names"])
                )
                for p in d.get("placeholders", ())
            ),
            extra=tuple(sorted((str(k), str(v)) for k, v in d.get("extra", {}).items())),
            editables=tuple(
                EditableSource(
                    name=e["name"],
                    version=e["version"],
                    style=e["style"],
                    url=e.get("url"),
                    metadata_path=e["metadata_path"],
                    roots=tuple(e["roots"]),
                    names=tuple(e.get("names", ())),
                    mode=e.get("mode", "functions"),
                    reason=e.get("reason", ""),
                )
                for e in d.get("editables", ())
            ),
            excluded=tuple(
                Exclusion(x["name"], x.get("version", ""), x["reason"])
                for x in d.get("excluded", ())
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(
            f"{origin} is a damaged lfm-pack analysis (bad or missing field: {exc})",
            hint="re-create it with: lfm-pack analyze TARGET --json > FILE",
        ) from exc


def read_lock(path: str | Path) -> Analysis:
    """Load a lock file written by `lfm-pack analyze --json`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputFileError(f"lock file {p}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"lock file {p} is unreadable: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputFileError(
            f"lock file {p} is not JSON ({exc})",
            hint="create one with: lfm-pack analyze TARGET --json > FILE",
        ) from exc
    return analysis_from_json(data, origin=str(p))
