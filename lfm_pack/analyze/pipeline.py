"""Run the analyze stage end to end: probe -> targets -> reach -> mapping -> closure.

The only place that sequences the analyze modules; each of them stays ignorant of the others'
I/O so they can be tested alone. Three things are decided here because they need several
stages at once:

* **Editable installs are the user's own code.** Every editable install of the environment
  (`distributions.editable_layout`: .pth directories, PEP 660 finder hooks, `editables`,
  `setup.py develop`) contributes its source directories as local roots, so reach follows the
  target into it function by function, maps *its* imports (declared or not) and ships its
  reached modules, sliced like any local file, plus its package data. Its declared
  `Requires-Dist` is not followed. When an installed package requires an editable one (the
  library may import any of it), or `pack --include NAME` names it, it is followed *whole*:
  every module reached, shipped unchanged.
* **Roots the code adds itself.** Literal `sys.path` edits in the target and in every shipped
  local file become local roots (analyze/reach_paths.py), iterated to a fixed point;
  `--source-root DIR` adds one by hand.
* **Pack options change the closure** (`for_pack`): `--include` members join with their own
  closure (labelled `<include>`), local modules named by `--include` are followed whole, and
  `--exclude` / `--skip-optional` remove members together with what only they needed. The
  result is the lock written beside the pack: it describes the archive.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from lfm_pack._version import __version__
from lfm_pack.analyze.closure import IMPORT, INCLUDE, compute_closure
from lfm_pack.analyze.distributions import DistIndex, EditableLayout, load_index, normalize
from lfm_pack.analyze.environment import probe
from lfm_pack.analyze.mapping import map_imports, map_sites
from lfm_pack.analyze.modpath import find_module
from lfm_pack.analyze.reach import reach
from lfm_pack.analyze.reach_metadata import lookup_distribution
from lfm_pack.analyze.reach_paths import FilePaths, absolute_module, path_findings, scan_file
from lfm_pack.analyze.targets import parse_target
from lfm_pack.errors import TargetError, UsageError
from lfm_pack.models import (
    Analysis,
    EditableSource,
    EnvInfo,
    Exclusion,
    Finding,
    ImportSite,
    Location,
    Package,
    ReachResult,
    ResolvedImport,
    TargetSpec,
)

#: Files of an editable package that never ship as its package data.
_NOT_DATA_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi")
_NOT_DATA_DIRS = frozenset({"__pycache__", "tests", "test"})
#: Package data above this size gets a warning (it all ships, like a wheel's package data).
_DATA_WARN_BYTES = 50 << 20

_MAX_PATH_ROUNDS = 8


def _dedup_findings(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    return tuple(dict.fromkeys(findings))


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


def _check_source_roots(source_roots: Sequence[str], cwd: str) -> list[str]:
    out = []
    for r in source_roots:
        full = os.path.normpath(os.path.join(cwd, os.path.expanduser(r)))
        if not os.path.isdir(full):
            raise UsageError(
                f"--source-root {r}: no such directory ({full})",
                hint="name a directory your code puts on sys.path (or imports modules from)",
            )
        out.append(full)
    return out


def _module_names(root: str, top: str) -> list[str]:
    """Dotted names of every module of the top-level package/module `top` under `root`.

    Test packages inside the package (`pkg/tests/`) and `conftest.py` are left out: they
    import pytest and friends, which a job never needs.
    """
    base = os.path.join(root, *top.split("."))
    if os.path.isfile(base + ".py"):
        return [top]
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d.isidentifier() and d not in _NOT_DATA_DIRS)
        rel = os.path.relpath(dirpath, root).replace(os.sep, ".")
        for fn in sorted(filenames):
            if not fn.endswith(".py") or fn == "conftest.py":
                continue
            stem = fn[:-3]
            if stem == "__init__":
                out.append(rel)
            elif stem.isidentifier():
                out.append(f"{rel}.{stem}")
    return out


def _package_data(layout: EditableLayout, shipped: Sequence[str]) -> list[str]:
    """Non-code files inside the editable's packages that have a shipped module.

    At home the code reads them through `__file__` / `importlib.resources` from the source
    tree; a wheel of the package would carry them too. Hidden files, `__pycache__` and test
    directories are skipped; extension modules (`.so`) are data here and ship as well.
    """
    tops: set[tuple[str, str]] = set()
    for f in shipped:
        for root in layout.roots:
            if _under(f, root):
                rel = os.path.relpath(f, root)
                if os.sep in rel and rel.split(os.sep)[0] in layout.names:
                    tops.add((root, rel.split(os.sep)[0]))
    out: list[str] = []
    for root, top in sorted(tops):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and d not in _NOT_DATA_DIRS
            )
            for fn in sorted(filenames):
                if fn.startswith(".") or fn.endswith(_NOT_DATA_SUFFIXES):
                    continue
                full = os.path.join(dirpath, fn)
                if os.path.isfile(full):
                    out.append(full)
    return out


def _finder_env(env: EnvInfo, layouts: Sequence[EditableLayout]) -> EnvInfo:
    """`env` with the roots of finder-hook editables on its path, for locating targets.

    A PEP 660 finder puts nothing on sys.path (it is a meta path hook), so `mypkg.core:fit`
    would not be found on the probed path although `import mypkg.core` works at home.
    """
    missing = [r for lay in layouts for r in lay.roots if r not in env.sys_path]
    if not missing:
        return env
    return replace(env, sys_path=(*env.sys_path, *dict.fromkeys(missing)))


def _layout_findings(
    layouts: Sequence[EditableLayout], used: Sequence[EditableSource]
) -> list[Finding]:
    out = []
    names = {u.name for u in used}
    for lay in layouts:
        d = lay.dist
        if d.name in names:
            src = next(u for u in used if u.name == d.name)
            how = (
                "every module is followed and ships unchanged"
                if src.mode == "whole"
                else "the functions the target reaches are followed and ship like your own files"
            )
            out.append(
                Finding(
                    "editable-source",
                    f"{d.name} {d.version} is an editable install ({lay.style}: "
                    f"{', '.join(lay.roots)}); it is your own code: {how}, and its imports are "
                    "mapped (declared or not)",
                    severity="info",
                )
            )
        for name, path in lay.unmapped:
            out.append(
                Finding(
                    "editable-unfollowed",
                    f"the editable install of {d.name} maps module {name!r} onto {path}, a "
                    "directory of another name: lfm-pack cannot follow imports of it; "
                    "re-install it with a standard layout (src/ or flat)",
                )
            )
    return out


def _reach_rounds(
    specs: Sequence[TargetSpec],
    env: EnvInfo,
    roots: Sequence[str],
    whole: Sequence[str],
    cwd: str,
) -> tuple[ReachResult, dict[str, FilePaths]]:
    """reach() until the `sys.path` edits of the shipped files add no new root."""
    scanned: dict[str, FilePaths] = {}
    path_roots: list[str] = []

    def scan(files: Sequence[str]) -> bool:
        new = False
        for f in files:
            if f in scanned or not f.endswith(".py"):
                continue
            scanned[f] = found = scan_file(f, cwd)
            for e in found.edits:
                d = e.directory
                if d is not None and os.path.isdir(d) and d not in path_roots:
                    path_roots.append(d)
                    new = True
        return new

    scan([s.path for s in specs if s.kind == "file"])
    reached = reach(specs, env, [*path_roots, *roots], whole)
    for _ in range(_MAX_PATH_ROUNDS):
        if not scan(reached.local_files):
            break
        reached = reach(specs, env, [*path_roots, *roots], whole)
    return reached, scanned


def _metadata_lookups(findings: Sequence[Finding]) -> list[str]:
    return [
        name
        for f in findings
        if f.code == "metadata-lookup" and (name := lookup_distribution(f.message)) is not None
    ]


def analyze_specs(
    specs: Sequence[TargetSpec],
    env: EnvInfo,
    index: DistIndex,
    cwd: str,
    source_roots: Sequence[str] = (),
    whole_local: Sequence[str] = (),
    whole_editables: Sequence[str] = (),
    include: Sequence[str] = (),
) -> Analysis:
    """Analyze parsed targets (see the module docstring for what is decided here).

    `whole_local` are local modules followed entirely; `whole_editables` editable installs
    (by normalized name) followed entirely; `include` distributions joining the closure.
    """
    layouts = index.editables()
    editable_roots = [r for lay in layouts for r in lay.roots]
    whole_keys = {normalize(n): "--include" for n in whole_editables}
    for _ in range(2):  # a second round when an installed package requires an editable one
        whole = list(whole_local)
        for lay in layouts:
            if lay.dist.key in whole_keys:
                for root in lay.roots:
                    for top in lay.names:
                        whole += _module_names(root, top)
        reached, scanned = _reach_rounds(specs, env, [*source_roots, *editable_roots], whole, cwd)
        resolved, map_findings = map_imports(reached, env, index)
        lookups = _metadata_lookups(reached.findings)
        packages, closure_findings = compute_closure(
            resolved,
            env,
            index,
            metadata_lookups=lookups,
            source=[lay.dist.key for lay in layouts],
            include=include,
        )
        required = {
            normalize(p.name): p
            for p in packages
            if any(r not in (IMPORT, INCLUDE) for r in p.required_by)
        }
        more = {
            lay.dist.key: "required by " + ", ".join(required[lay.dist.key].required_by)
            for lay in layouts
            if lay.dist.key in required and lay.dist.key not in whole_keys
        }
        if not more:
            break
        whole_keys.update(more)
    used: list[EditableSource] = []
    data: list[str] = []
    findings: list[Finding] = []
    local_files = list(reached.local_files)
    for lay in layouts:
        mine = [f for f in local_files if any(_under(f, r) for r in lay.roots)]
        looked_up = any(normalize(p.name) == lay.dist.key for p in packages)
        if not mine and not looked_up:
            continue
        mode = "whole" if lay.dist.key in whole_keys else "functions"
        reason = whole_keys.get(lay.dist.key) or (
            "imported by reached code" if mine else "its metadata is read"
        )
        used.append(
            EditableSource(
                name=lay.dist.name,
                version=lay.dist.version,
                style=lay.style,
                url=lay.dist.direct_url,
                metadata_path=lay.dist.metadata_path,
                roots=lay.roots,
                names=lay.names,
                mode=mode,
                reason=reason,
            )
        )
        pkg_data = _package_data(lay, mine)
        data += pkg_data
        size = sum(os.path.getsize(f) for f in pkg_data)
        if size > _DATA_WARN_BYTES:
            findings.append(
                Finding(
                    "editable-data-large",
                    f"{lay.dist.name}: {len(pkg_data)} package data files ({size >> 20} MB) "
                    "inside its package directories ship with its source",
                )
            )
    findings += _layout_findings(layouts, used)
    roots = list(dict.fromkeys([*reached.local_roots, *source_roots]))
    for f in [*(s.path for s in specs if s.kind == "file"), *local_files]:
        found = scanned.get(f)
        if found is not None:
            findings += path_findings(f, found, roots)
    return Analysis(
        targets=tuple(specs),
        env=env,
        imports=tuple(r for r in resolved if r.kind != "unresolved"),
        local_files=tuple(dict.fromkeys([*local_files, *data])),
        local_roots=tuple(roots),
        unresolved=tuple(r for r in resolved if r.kind == "unresolved"),
        findings=_dedup_findings(
            (
                *reached.findings,
                *index.findings,
                *map_findings,
                *closure_findings,
                *findings,
            )
        ),
        packages=packages,
        placeholders=reached.placeholders,
        extra=(("tool", f"lfm-pack {__version__}"),),
        editables=tuple(used),
    )


def analyze_in(
    raw_targets: Sequence[str],
    env: EnvInfo,
    cwd: str | None = None,
    source_roots: Sequence[str] = (),
) -> Analysis:
    """Analyze `raw_targets` against an already probed environment."""
    if not raw_targets:
        raise TargetError("no target given", hint="e.g. lfm-pack analyze script.py:func")
    here = os.path.abspath(cwd or os.getcwd())
    roots = _check_source_roots(source_roots, here)
    index = load_index(env)
    tenv = _finder_env(env, index.editables())
    specs = tuple(parse_target(raw, tenv, here) for raw in raw_targets)
    return analyze_specs(specs, env, index, here, roots)


def run_analysis(
    raw_targets: Sequence[str],
    python: str | None = None,
    prefix: str | None = None,
    cwd: str | None = None,
    source_roots: Sequence[str] = (),
) -> Analysis:
    """Probe the target environment (subprocess) and analyze the targets in it."""
    return analyze_in(raw_targets, probe(python, prefix), cwd, source_roots)


# --------------------------------------------------------------------------- pack options


def _classify_include(name: str, analysis: Analysis, index: DistIndex) -> tuple[str, str]:
    """("dist", key) | ("editable", key) | ("local", dotted modules, comma-separated).

    A local package stands for all its modules (tests excepted), so the functions of its
    submodules are followed too.

    A distribution name first (`scikit-learn`), then a local module under the analysis' roots
    (`helpers`, `mypkg.plugins.extra`), then an import name (`sklearn`, `yaml`) resolved to the
    distribution owning the file it loads, as for any import.
    """
    env = analysis.env
    dist = index.get(name)
    if dist is not None:
        return ("editable", dist.key) if dist.editable else ("dist", dist.key)
    if name.replace(".", "").replace("_", "").isalnum() and not name.startswith("."):
        roots = list(analysis.local_roots) + [r for lay in index.editables() for r in lay.roots]
        loc = find_module(name, roots, env.ext_suffixes)
        if loc is not None and loc.path is not None:
            # a package: all of it (its submodules' functions too), like an editable whole
            return "local", ",".join(_module_names(loc.root, name)) if loc.is_package else name
        site = ImportSite(module=name, location=Location("<--include>", 0))
        (resolved,), _ = map_sites([site], env, index)
        if resolved.kind == "third-party" and resolved.distribution:
            owner = index.get(resolved.distribution)
            if owner is not None and owner.editable:
                return "editable", owner.key
            return "dist", resolved.distribution
        if resolved.kind in ("stdlib", "builtin"):
            raise UsageError(
                f"--include {name}: {name} is in the standard library, which every pack has",
                hint="drop that --include",
            )
    raise UsageError(
        f"--include {name}: no installed distribution, importable module or local module "
        f"of that name in {env.prefix}",
        hint="give a distribution (pip list) or a module name as you import it",
    )


def _keep_included_imports(
    analysis: Analysis, dists: set[str], local: set[str], index: DistIndex
) -> tuple[Analysis, list[Finding]]:
    """Placeholders of imports that `--include` now ships become real imports again.

    Otherwise `--include requests` would ship requests while the shipped file still binds
    `requests` to a placeholder that raises: the hint would not produce a working pack.
    """
    keep = []
    notes: list[Finding] = []
    env = analysis.env
    for p in analysis.placeholders:
        mods = [
            absolute_module(p.path, m.strip(), analysis.local_roots) for m in p.module.split(",")
        ]
        covered = []
        for m in mods:
            if any(m == x or m.startswith(x + ".") for x in local):
                covered.append(True)
                continue
            site = ImportSite(module=m, location=Location(p.path, p.line))
            (r,), _ = map_sites([site], env, index)
            covered.append(r.kind == "third-party" and r.distribution in dists)
        if covered and all(covered):
            continue
        if any(covered):
            notes.append(
                Finding(
                    "include-partial",
                    f"{p.path}:{p.line} imports {p.module} in one statement; only part of it "
                    "is included, so the statement stays a placeholder",
                    Location(p.path, p.line),
                )
            )
        keep.append(p)
    return replace(analysis, placeholders=tuple(keep)), notes


def _parents(p: Package) -> list[str]:
    return [normalize(r.partition("[")[0]) for r in p.required_by if r not in (IMPORT, INCLUDE)]


def _apply_exclusions(
    analysis: Analysis, exclude: Sequence[str], skip_optional: bool
) -> tuple[Analysis, list[Finding]]:
    """Leave out `--exclude` members (and `--skip-optional` ones) and what only they needed.

    The kept members' `required_by` lose the parents that are gone, so the lock says why each
    shipped member is there; every removed member is listed in `excluded` with its reason.
    """
    by_key = {normalize(p.name): p for p in analysis.packages}
    asked = {normalize(n): n for n in exclude}
    findings: list[Finding] = []
    editable = {normalize(e.name) for e in analysis.editables}
    for key, raw in asked.items():
        if key in editable and key not in by_key:
            findings.append(
                Finding(
                    "exclude-local",
                    f"--exclude {raw}: {raw} is an editable install followed as your own code; "
                    "its reached modules ship like any local file",
                )
            )
        elif key not in by_key:
            findings.append(
                Finding("exclude-unused", f"--exclude {raw}: not in the closure, nothing left out")
            )
    blocked = {k for k in asked if k in by_key}
    if skip_optional:
        blocked |= {k for k, p in by_key.items() if p.optional}
    if not blocked:
        return analysis, findings
    children: dict[str, list[str]] = {}
    for k, p in by_key.items():
        for parent in _parents(p):
            children.setdefault(parent, []).append(k)
    todo = [
        k
        for k, p in by_key.items()
        if k not in blocked and any(r in (IMPORT, INCLUDE) for r in p.required_by)
    ]
    kept: set[str] = set()
    while todo:
        k = todo.pop()
        if k in kept or k in blocked:
            continue
        kept.add(k)
        todo += children.get(k, [])
    excluded = list(analysis.excluded)
    packages = []
    for k, p in by_key.items():
        if k in kept:
            rb = tuple(
                r
                for r in p.required_by
                if r in (IMPORT, INCLUDE) or normalize(r.partition("[")[0]) in kept
            )
            packages.append(replace(p, required_by=rb))
            continue
        if k in asked:
            reason = "--exclude"
        elif k in blocked:
            reason = "optional: only reached through guarded imports (--skip-optional)"
        else:
            gone = sorted({by_key[x].name for x in _parents(p) if x in by_key})
            reason = f"only needed by {', '.join(gone)}, which the pack leaves out"
        excluded.append(Exclusion(p.name, p.version, reason))
    return (
        replace(
            analysis,
            packages=tuple(sorted(packages, key=lambda p: normalize(p.name))),
            excluded=tuple(excluded),
        ),
        findings,
    )


def for_pack(
    analysis: Analysis,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skip_optional: bool = False,
    index: DistIndex | None = None,
) -> Analysis:
    """The analysis of what one pack ships: `analysis` with the pack options applied.

    Idempotent: applying the same options to its own result changes nothing, so a pack made
    from the lock written beside another pack ships the same closure.
    """
    # a lock written beside an earlier pack keeps that pack's exclusions
    exclude = [*exclude, *(e.name for e in analysis.excluded if e.reason == "--exclude")]
    skip_optional = skip_optional or any(e.reason.startswith("optional") for e in analysis.excluded)
    if not include and not exclude and not skip_optional:
        return analysis
    index = index or load_index(analysis.env)
    dists: set[str] = set()
    editables: set[str] = set()
    local: set[str] = set()
    for name in include:
        kind, value = _classify_include(name, analysis, index)
        for v in value.split(","):
            {"dist": dists, "editable": editables, "local": local}[kind].add(v)
    names_of = {lay.dist.key: lay.names for lay in index.editables()}
    shipped_local = local | {n for k in editables for n in names_of.get(k, ())}
    a = analysis
    if editables or local:
        cwd = os.path.dirname(a.targets[0].path) if a.targets else os.getcwd()
        for e in a.editables:
            if e.mode == "whole":
                editables.add(normalize(e.name))
        a = analyze_specs(
            a.targets,
            a.env,
            index,
            cwd,
            source_roots=[r for r in a.local_roots if os.path.isdir(r)],
            whole_local=sorted(local),
            whole_editables=sorted(editables),
            include=sorted(dists),
        )
    elif dists:
        resolved: list[ResolvedImport] = [r for r in a.imports if r.kind == "third-party"]
        packages, closure_findings = compute_closure(
            resolved,
            a.env,
            index,
            metadata_lookups=_metadata_lookups(a.findings),
            source=[normalize(e.name) for e in a.editables],
            include=sorted(dists),
        )
        a = replace(
            a, packages=packages, findings=_dedup_findings((*a.findings, *closure_findings))
        )
    notes: list[Finding] = []
    if dists or shipped_local:
        a, notes = _keep_included_imports(a, dists, shipped_local, index)
    a, ex_notes = _apply_exclusions(a, exclude, skip_optional)
    return replace(a, findings=_dedup_findings((*a.findings, *notes, *ex_notes)))
