"""Map each reached import to the file the target would load, then to the distribution owning it.

Resolving through the *file* (not a name table) is what makes `yaml` -> PyYAML, `cv2` ->
opencv-python-headless, `google.protobuf` -> protobuf (and not every dist with a `google/`
portion) and extension-only packages come out right: the import system's own search order
decides which file wins, and the RECORD / conda record that lists that file names the owner.

Order of questions per import site: builtin (compiled into the target) -> stdlib by the
*target's* version (`tomllib` only 3.11+, `distutils` gone in 3.12) -> find the module on the
target's sys.path (the exact dotted name, else its longest resolvable prefix: in
`from PIL import Image` the `Image` may be an attribute) -> a file under the target's stdlib
dirs is stdlib -> the owner of the file -> otherwise unresolved, with a finding saying why.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lfm_pack.analyze.distributions import DistIndex
from lfm_pack.analyze.modpath import ModuleLocation, find_module
from lfm_pack.models import EnvInfo, Finding, ImportSite, ReachResult, ResolvedImport


def _locate(name: str, env: EnvInfo) -> ModuleLocation | None:
    """The exact module, else the longest importable prefix of the dotted name."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        loc = find_module(".".join(parts[:n]), env.sys_path, env.ext_suffixes)
        if loc is not None:
            return loc
    return None


def _stdlib_dirs(env: EnvInfo) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(stdlib roots, site dirs): a file under a root but not under a site dir is stdlib."""
    roots = {os.path.normpath(p) for p in (env.stdlib_dir, env.platstdlib_dir) if p}
    roots |= {os.path.normpath(p) for p in env.sys_path if p.endswith(".zip")}
    sites = tuple(os.path.normpath(p) + "/" for p in env.site_packages)
    return tuple(r + "/" for r in roots), sites


def _is_stdlib_file(path: str, env: EnvInfo) -> bool:
    roots, sites = _stdlib_dirs(env)
    norm = os.path.normpath(path)
    if any(norm.startswith(s) for s in sites) or "/site-packages/" in norm:
        return False
    return any(norm.startswith(r) for r in roots)


class _Mapper:
    def __init__(self, env: EnvInfo, index: DistIndex) -> None:
        self.env = env
        self.index = index
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, str]] = set()

    def note(self, key: str, finding: Finding) -> None:
        """One finding per (code, module): a module imported in ten places is one problem."""
        if (finding.code, key) not in self._seen:
            self._seen.add((finding.code, key))
            self.findings.append(finding)

    def map_one(self, site: ImportSite) -> ResolvedImport:
        env, name = self.env, site.module
        top = name.split(".", 1)[0]
        if name in env.builtin_modules or top in env.builtin_modules:
            return ResolvedImport(site, "builtin")
        if top in env.stdlib_modules:
            loc = find_module(name, env.sys_path, env.ext_suffixes)
            return ResolvedImport(site, "stdlib", file=loc.path if loc else None)
        loc = _locate(name, env)
        if loc is None:
            return self._missing(site)
        if loc.path is None:
            return self._namespace(site, loc)
        if _is_stdlib_file(loc.path, env):
            return ResolvedImport(site, "stdlib", file=loc.path)
        owners = self.index.owners(loc.path)
        if not owners:
            self.note(
                name,
                Finding(
                    "unowned-file",
                    f"{name} resolves to {loc.path}, which no installed distribution lists "
                    "(installed by hand or by a tool that writes no RECORD); it is not pinned",
                    site.location,
                ),
            )
            return ResolvedImport(site, "unresolved", file=loc.path)
        owner = owners[0]
        if len(owners) > 1:
            self.note(
                name,
                Finding(
                    "owner-conflict",
                    f"{loc.path} (module {name}) is claimed by "
                    + ", ".join(f"{d.name} {d.version}" for d in owners)
                    + f"; using {owner.name} (first on sys.path)",
                    site.location,
                ),
            )
        if owner.editable or (owner.direct_url and not owner.direct_url.startswith("http")):
            kind = "editable" if owner.editable else "local/VCS"
            self.note(
                name,
                Finding(
                    "editable-install",
                    f"{name} comes from the {kind} install of {owner.name} ({owner.direct_url}); "
                    "its code is shipped from that directory, it cannot be re-installed by pin",
                    site.location,
                    severity="info",
                ),
            )
        return ResolvedImport(site, "third-party", file=loc.path, distribution=owner.key)

    def _namespace(self, site: ImportSite, loc: ModuleLocation) -> ResolvedImport:
        """`import google` alone: the portions' owners; ambiguous when several dists share it."""
        owners: list[str] = []
        for d in loc.search_locations:
            for dist in self.index.owners_under(d):
                if dist.key not in owners:
                    owners.append(dist.key)
        if not owners:
            if all(_is_stdlib_file(d + "/x", self.env) for d in loc.search_locations):
                return ResolvedImport(site, "stdlib")
            self.note(
                site.module,
                Finding(
                    "unowned-file",
                    f"namespace package {site.module} ({', '.join(loc.search_locations)}) is "
                    "owned by no installed distribution",
                    site.location,
                ),
            )
            return ResolvedImport(site, "unresolved")
        if len(owners) > 1:
            self.note(
                site.module,
                Finding(
                    "ambiguous-namespace",
                    f"{site.module} is a namespace package shared by {', '.join(owners)}; "
                    f"only {owners[0]} is counted - import the submodule you use",
                    site.location,
                ),
            )
        return ResolvedImport(site, "third-party", distribution=owners[0])

    def _missing(self, site: ImportSite) -> ResolvedImport:
        env, name = self.env, site.module
        if name.split(".", 1)[0] == "distutils" and env.version >= (3, 12):
            setuptools = self.index.get("setuptools")
            if setuptools is not None:
                self.note(
                    name,
                    Finding(
                        "distutils-removed",
                        f"distutils is not in the stdlib of Python {env.version_str}; "
                        "setuptools' copy is used",
                        site.location,
                        severity="info",
                    ),
                )
                return ResolvedImport(site, "third-party", distribution=setuptools.key)
        if site.optional:
            self.note(
                name,
                Finding(
                    "optional-missing",
                    f"optional import {name} is not installed in the target environment",
                    site.location,
                    severity="info",
                ),
            )
        else:
            self.note(
                name,
                Finding(
                    "missing-import",
                    f"{name} is imported but not installed in the target environment "
                    f"(Python {env.version_str}, {env.prefix})",
                    site.location,
                    severity="error",
                ),
            )
        return ResolvedImport(site, "unresolved")


def map_imports(
    reach: ReachResult, env: EnvInfo, index: DistIndex
) -> tuple[tuple[ResolvedImport, ...], tuple[Finding, ...]]:
    """Resolve every reached import site; findings explain each unresolved or doubtful one."""
    mapper = _Mapper(env, index)
    resolved = tuple(mapper.map_one(site) for site in reach.imports)
    return resolved, tuple(mapper.findings)


def map_sites(
    sites: Sequence[ImportSite], env: EnvInfo, index: DistIndex
) -> tuple[tuple[ResolvedImport, ...], tuple[Finding, ...]]:
    """`map_imports` for a bare list of sites (tests, `--why` re-runs)."""
    return map_imports(
        ReachResult(imports=tuple(sites), local_files=(), local_roots=()), env, index
    )
