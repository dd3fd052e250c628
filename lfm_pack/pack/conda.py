"""Pack a conda prefix through conda-pack, keeping only the closure (the only conda_pack importer).

conda-pack knows how conda relocates: prefix placeholders per file (from the package cache's
`info/paths.json`), shebang rewriting and the `conda-unpack` script that fixes the rest on the
node. lfm-pack hands it exactly the kept files - the closure's conda records (plus the `python`
record and everything its `depends` pull in: the interpreter must travel), their conda-meta JSON,
`conda-meta/history`, and the pip-installed files of the closure - and asks for
`format="no-archive"` into a staging directory: that avoids conda-pack's crash on an old
`conda-meta/history` mtime and its 0600 archive mode, and lets our deterministic writer compress.

Refusals (RefusedError, exit 8; override flags exist):
* a kept conda package missing from the package cache whose files hold the build prefix in
  binary data: conda-pack cannot know the placeholder, so it cannot relocate those bytes
  (`--allow-unrelocatable` ships them anyway, and says so).
Editable pip installs are the user's own code: their reached modules ship as local files and
their metadata beside the other distributions (select.editable_entries).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfm_pack.errors import PackError, RefusedError
from lfm_pack.models import Analysis, Distribution, normalize_name
from lfm_pack.pack.archive import Entry
from lfm_pack.pack.interpreter import TRIM_DIRS, TRIM_DYNLOAD
from lfm_pack.pack.select import (
    Options,
    closure_distributions,
    default_site_arc,
    editable_entries,
    is_stripped,
    local_entries,
    placeholder_exclusions,
    rewrite_script,
)


@dataclass(frozen=True)
class CondaPlan:
    entries: tuple[Entry, ...]
    executable: str
    excluded: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    distributions: tuple[str, ...]
    app_paths: tuple[str, ...]
    app_of: tuple[tuple[str, str], ...]
    needs_conda_unpack: bool


def _read_records(prefix: str) -> dict[str, dict[str, Any]]:
    """conda-meta/*.json by package name."""
    meta = Path(prefix) / "conda-meta"
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(meta.glob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PackError(f"unreadable conda record {p}: {exc}") from exc
        data["_meta_file"] = f"conda-meta/{p.name}"
        out[str(data["name"])] = data
    return out


def _dep_name(spec: str) -> str:
    return re.split(r"[\s=<>!~\[]", spec.strip(), maxsplit=1)[0]


def record_closure(
    records: dict[str, dict[str, Any]], roots: list[str], excluded: set[str]
) -> list[str]:
    """Names reachable from `roots` through conda `depends` (missing names are skipped)."""
    seen: list[str] = []
    todo = [r for r in roots if r in records]
    while todo:
        n = todo.pop()
        if n in seen or n in excluded:
            continue
        seen.append(n)
        for dep in records[n].get("depends") or ():
            d = _dep_name(str(dep))
            if d in records and d not in seen:
                todo.append(d)
    return sorted(seen)


def _unrelocatable(prefix: str, rec: dict[str, Any]) -> list[str]:
    """Files of an uncached record that hold the prefix inside binary data."""
    source = (rec.get("link") or {}).get("source") or ""
    if source and os.path.isdir(source):
        return []
    needle = prefix.encode()
    bad = []
    for f in rec.get("files") or ():
        full = os.path.join(prefix, f)
        if os.path.islink(full) or not os.path.isfile(full):
            continue
        with open(full, "rb") as fh:
            data = fh.read()
        if b"\0" in data[:8192] and needle in data:
            bad.append(str(f))
    return bad


def trim_reason(
    target: str, version: tuple[int, int, int], keep: set[str], strip: frozenset[str]
) -> str | None:
    """Why a prefix-relative file is left out ("stdlib:<dir>", "" for --strip), else None.

    The same stdlib trim as for pip environments (interpreter.TRIM_DIRS / TRIM_DYNLOAD) minus
    the modules the analysis reached, and the --strip choices inside site-packages.
    """
    std = f"lib/python{version[0]}.{version[1]}/"
    if not target.startswith(std):
        return None
    rest = target[len(std) :]
    parts = rest.split("/")
    if parts[0] in ("site-packages", "dist-packages"):
        return "" if is_stripped("/".join(parts[1:]), strip) else None
    trim = (TRIM_DIRS - {"site-packages", "dist-packages", "__pycache__"}) - keep
    for i, part in enumerate(parts[:-1]):
        if part in trim or (i == 0 and part.startswith("config-")):
            return "stdlib:" + "/".join(parts[: i + 1])
    if (
        parts[0] == "lib-dynload"
        and TRIM_DYNLOAD.match(parts[-1])
        and not ("tkinter" in keep and parts[-1].startswith("_tkinter."))
    ):
        return "stdlib:" + rest
    return None


def _is_script(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"#!"


def _unrelocatable_notes(
    prefix: str, records: dict[str, dict[str, Any]], kept: list[str], allow: bool
) -> list[str]:
    """Refuse (or, with --allow-unrelocatable, note) packages conda-unpack cannot relocate."""
    bad: dict[str, list[str]] = {}
    for n in kept:
        files = _unrelocatable(prefix, records[n])
        if files:
            bad[n] = files
    if bad and not allow:
        first = "; ".join(f"{n}: {', '.join(fs[:2])}" for n, fs in sorted(bad.items()))
        raise RefusedError(
            f"conda package(s) missing from the package cache hold the build prefix in binary "
            f"files, which conda-unpack cannot relocate: {first}",
            hint="restore the package cache (conda install --force-reinstall), or pass "
            "--allow-unrelocatable to ship them unrelocated",
        )
    return [
        f"{n}: not in the package cache; binary prefixes left unrelocated (--allow-unrelocatable)"
        for n in sorted(bad)
    ]


def _keep_targets(
    prefix: str, records: dict[str, dict[str, Any]], kept: list[str], pip_dists: list[Distribution]
) -> set[str]:
    """Prefix-relative paths of every kept conda record and non-editable pip distribution."""
    keep: set[str] = {"conda-meta/history"}
    for n in kept:
        rec = records[n]
        keep.update(str(f) for f in rec.get("files") or ())
        keep.add(rec["_meta_file"])
    for d in pip_dists:
        if d.editable:
            continue
        for f in d.files:
            rel = os.path.relpath(os.path.realpath(f), prefix)
            if not rel.startswith("..") and "__pycache__" not in rel:
                keep.add(rel)
    return keep


def _run_conda_pack(prefix: str, files: list[Any], out_dir: Path, keep: set[str]) -> None:
    """conda-pack's own staging (format no-archive) of exactly `files` into `out_dir`."""
    from conda_pack.core import CondaEnv

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        CondaEnv(prefix, files).pack(output=str(out_dir), format="no-archive", force=True)
    except Exception as exc:  # conda_pack raises CondaPackException and plain OSErrors
        raise PackError(f"conda-pack failed: {exc}") from exc
    # conda-pack ends every pack with shutil.move(<empty mkstemp file>, output); for a directory
    # output that drops an empty "tmpXXXXXXXX" file into it: remove it
    for stray in out_dir.glob("tmp*"):
        if (
            stray.is_file()
            and not stray.is_symlink()
            and stray.stat().st_size == 0
            and (stray.name not in keep)
        ):
            stray.unlink()


def _staged_entry(full: str, rel: str, exe_name: str) -> Entry:
    """One staged file as an archive entry; `bin/` scripts get the pack's own interpreter."""
    if os.path.islink(full):
        return Entry(rel, link=os.readlink(full))
    if rel.startswith("bin/") and rel != "bin/conda-unpack" and _is_script(full):
        # conda-pack leaves `#!/usr/bin/env python3.X` (needs an activated env on PATH);
        # the pack's own interpreter next to the script is what a bare node has
        with open(full, "rb") as fh:
            new = rewrite_script(fh.read(), exe_name)
        if new is not None:
            return Entry(rel, data=new, executable=True)
    return Entry(rel, source=full, executable=os.access(full, os.X_OK))


def _staged_entries(out_dir: Path, version: tuple[int, int, int]) -> dict[str, Entry]:
    """Every file and symlink conda-pack staged, plus the conda-unpack helper in site-packages."""
    exe_name = f"python{version[0]}.{version[1]}"
    entries: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(out_dir):
        for name in sorted(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                rel = os.path.relpath(full, out_dir)
                entries[rel] = Entry(rel, link=os.readlink(full))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, out_dir)
            entries[rel] = _staged_entry(full, rel, exe_name)
    progress_mod = out_dir / "bin" / "conda_unpack_progress.py"
    if progress_mod.is_file():
        # conda-unpack imports this helper from its own directory, which `python -I` (how
        # launchers run it, ignoring the environment) leaves off sys.path: ship a copy in
        # site-packages so both `python -I bin/conda-unpack` and `bin/conda-unpack` work
        arc = f"lib/{exe_name}/site-packages/conda_unpack_progress.py"
        entries[arc] = Entry(arc, source=str(progress_mod))
    return entries


def plan_conda(analysis: Analysis, opts: Options, staging: Path) -> CondaPlan:
    """Stage the kept files with conda-pack (no-archive) and list them as entries."""
    import conda_pack  # noqa: F401 - fail early with the real import error
    from conda_pack.core import load_environment

    from lfm_pack.analyze.distributions import load_index

    env = analysis.env
    prefix = os.path.realpath(env.prefix)
    records = _read_records(prefix)

    excl = {normalize_name(n) for n in opts.exclude}
    dists, excluded = closure_distributions(analysis, load_index(env), opts)
    conda_roots = ["python", *(d.name for d in dists if d.source == "conda")]
    pip_dists = [d for d in dists if d.source != "conda"]
    excl_conda = {n for n in records if normalize_name(n) in excl and n != "python"}
    kept = record_closure(records, conda_roots, excl_conda)
    if "python" not in kept:
        raise PackError(f"{prefix} has no conda `python` record", hint="is it a conda environment?")
    notes = _unrelocatable_notes(prefix, records, kept, opts.allow_unrelocatable)

    all_files = load_environment(
        prefix, on_missing_cache="ignore", ignore_editable_packages=True, ignore_missing_files=True
    )
    keep_targets = _keep_targets(prefix, records, kept, pip_dists)
    ed_entries, ed_notes = editable_entries(analysis, default_site_arc(analysis), pip_dists)
    notes += ed_notes
    keep_std = {r.site.module.split(".")[0] for r in analysis.imports if r.kind == "stdlib"}
    files = []
    trimmed: set[str] = set()
    for f in all_files:
        target = os.path.normpath(f.target)
        if target not in keep_targets or "__pycache__/" in f.target or target.endswith(".pyc"):
            continue
        why = trim_reason(target, env.version, keep_std, opts.strip)
        if why:
            trimmed.add(why)
            continue
        files.append(f)
    excluded += [(name, "trimmed from the stdlib") for name in sorted(trimmed) if name]
    out_dir = staging / "env"
    _run_conda_pack(prefix, files, out_dir, keep_targets)

    entries = _staged_entries(out_dir, env.version)
    for e in ed_entries:
        entries.setdefault(e.arcname, e)
    local, app_paths, app_of = local_entries(analysis, opts.extra_files)
    for e in local:
        entries[e.arcname] = e
    excluded += placeholder_exclusions(analysis)
    left = sorted(set(records) - set(kept))
    if left:
        excluded.append(
            (f"conda:{len(left)} packages", "not in the closure: " + ", ".join(left[:20]))
        )
    xy = f"{env.version[0]}.{env.version[1]}"
    exe = f"bin/python{xy}"
    if exe not in entries:
        raise PackError(f"the conda python record does not provide {exe}")
    return CondaPlan(
        entries=tuple(entries[k] for k in sorted(entries)),
        executable=exe,
        excluded=tuple(excluded),
        notes=tuple(notes),
        distributions=tuple(
            [f"{n}=={records[n]['version']}" for n in kept]
            + [f"{d.name}=={d.version}" for d in pip_dists]
        ),
        app_paths=app_paths,
        app_of=tuple(app_of),
        needs_conda_unpack=True,
    )
