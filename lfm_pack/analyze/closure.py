"""The pinned closure: directly imported distributions plus everything they require, as installed.

Why from installed metadata and not a resolver: the pack ships what is installed, so the
closure must be exactly the installed versions (poncho's re-solving of exact pins is what
broke, cctools#3856). Edges:
* pip `Requires-Dist`, markers evaluated with the *target's* marker environment (not the
  host's: pipdeptree's bug), `extra == "x"` true only when the requiring edge asked for
  extra x (installed metadata never records which extras were requested, so a direct
  import starts with none);
* conda `depends`, matched by name against installed conda records (python and native
  libraries such as libopenblas included; `__glibc`-style virtual packages skipped).
Every member keeps the names of the members that brought it in (`<import>` for direct
imports), which `why` turns into chains for `lfm-pack analyze --why NAME`.

The result is a pure function of (installed metadata, direct imports, target markers), so it
is cached under `${XDG_CACHE_HOME:-~/.cache}/lfm-pack/closure/`, keyed by the index's
fingerprint (which changes with any install) and this module's own source. A warm
`lfm-pack analyze` therefore never imports `packaging` (its import alone is ~30-100 ms).
Requires-Dist lines guarded only by an extra nobody asked for are skipped by a regex before
any parsing (most lines of big packages are such).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lfm_pack._version import __version__
from lfm_pack.analyze.distributions import DistIndex, normalize
from lfm_pack.jsonio import atomic_open
from lfm_pack.models import Analysis, Distribution, EnvInfo, Finding, Package, ResolvedImport
from lfm_pack.paths import user_cache_dir

if TYPE_CHECKING:
    from packaging.markers import Marker

IMPORT = "<import>"
#: `required_by` label of a member the user asked for with `pack --include NAME`.
INCLUDE = "<include>"
_EXTRA_ONLY = re.compile(r"""^[^;]*;\s*extra\s*==\s*(['"])([^'"]+)\1\s*$""")


@dataclass
class _Member:
    dist: Distribution
    direct: bool = False
    direct_optional: bool = True
    required_by: list[str] = field(default_factory=list)
    children: set[str] = field(default_factory=set)
    soft_children: set[str] = field(default_factory=set)  # via an installed, unrequested extra
    extras_done: set[str] = field(default_factory=set)
    markers: list[str | None] = field(default_factory=list)  # one per incoming pip edge


#: Extras that never serve the code at run time: never pulled in by `installed_extras`.
_DEV_EXTRA = re.compile(
    r"^(test|tests|testing|dev|develop|development|devel|doc|docs|documentation|lint|linting|"
    r"typing|types|mypy|type-check|check|qa|style|format|all|complete|full|everything|build|"
    r"benchmark|benchmarks|bench|release|ci|coverage|examples?|notebooks?)([-_.].*)?$"
)


def _eval_marker(marker: Marker, env: dict[str, str], extras: set[str]) -> bool:
    return any(marker.evaluate({**env, "extra": extra}) for extra in extras | {""})


def _strip_extra(marker: Marker | None) -> str | None:
    """The marker text worth keeping on a pinned line (markers about extras are dropped)."""
    if marker is None:
        return None
    text = str(marker)
    return None if "extra" in text else text


# --------------------------------------------------------------------------- conda specs

_CONDA_OP = re.compile(r"^(>=|<=|==|!=|>|<|~=)?\s*(.+)$")


def _conda_version_ok(installed: str, spec: str) -> bool | None:
    """Does `installed` satisfy a conda version spec? None when the spec is beyond us."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        have = Version(installed)
    except InvalidVersion:
        return None
    for alternative in spec.split("|"):
        ok = True
        for part in alternative.split(","):
            part = part.strip()
            if not part or part == "*":
                continue
            m = _CONDA_OP.match(part)
            if m is None:
                return None
            op, ver = m.group(1) or "", m.group(2)
            try:
                if ver.endswith(".*") or ver.endswith("*") or not op:
                    stem = ver.rstrip("*").rstrip(".")
                    if op in ("", "==") and not stem:
                        continue
                    prefix_ok = installed == stem or installed.startswith(stem + ".")
                    if op == "!=":
                        ok = ok and not prefix_ok
                    elif op in ("", "=="):
                        ok = ok and (
                            prefix_ok
                            or (not ver.endswith("*") and not op and have == Version(stem))
                        )
                    else:
                        ok = ok and SpecifierSet(f"{op}{stem}").contains(have, prereleases=True)
                else:
                    cleaned = re.sub(r"(a0|\.dev0)$", "", ver) if op in ("<", "<=") else ver
                    ok = ok and SpecifierSet(f"{op}{cleaned}").contains(have, prereleases=True)
            except (InvalidSpecifier, InvalidVersion):
                return None
        if ok:
            return True
    return False


def _parse_conda_dep(dep: str) -> tuple[str, str | None]:
    """`numpy >=1.21,<2` / `python 3.11.* *_cpython` / `libgcc-ng>=12` -> (name, version spec)."""
    dep = dep.strip()
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", dep)
    if m is None:
        return dep, None
    name, rest = m.group(1), m.group(2).strip()
    version = rest.split()[0] if rest else None
    return name, version


# --------------------------------------------------------------------------- the closure


class _Closure:
    def __init__(
        self,
        env: EnvInfo,
        index: DistIndex,
        installed_extras: bool = True,
        source: frozenset[str] = frozenset(),
    ) -> None:
        self.env = env
        self.source = source  # editable installs shipped as source: their edges are imports
        self.installed_extras = installed_extras
        self.markers = env.markers_dict
        self.index = index
        self.members: dict[str, _Member] = {}
        self.findings: list[Finding] = []
        self.queue: deque[tuple[str, frozenset[str]]] = deque()

    def add_direct(self, key: str, optional: bool, label: str = IMPORT) -> None:
        dist = self.index.get(key)
        if dist is None:  # mapping named it, so it is installed; guard anyway
            return
        m = self.members.setdefault(dist.key, _Member(dist))
        if label not in m.required_by:
            m.required_by.insert(0 if label == IMPORT else len(m.required_by), label)
            m.markers.append(None)
        m.direct = True
        m.direct_optional = m.direct_optional and optional
        self.queue.append((dist.key, frozenset()))

    def run(self) -> None:
        while self.queue:
            key, extras = self.queue.popleft()
            m = self.members[key]
            wanted = set(extras) | {""}
            new = wanted - m.extras_done
            if not new:
                continue
            m.extras_done |= new
            if key in self.source:
                continue  # followed as local code: what it imports is already in the closure
            if m.dist.source == "conda":
                self._conda_edges(m)
            else:
                self._pip_edges(m, set(new))

    def _edge(self, parent: _Member, child: Distribution, marker: str | None) -> _Member:
        cm = self.members.get(child.key)
        if cm is None:
            cm = self.members[child.key] = _Member(child)
        if parent.dist.name not in cm.required_by:
            cm.required_by.append(parent.dist.name)
            cm.markers.append(marker)
        parent.children.add(child.key)
        return cm

    def _pip_edges(self, m: _Member, extras: set[str]) -> None:
        from packaging.requirements import InvalidRequirement, Requirement

        asked = {normalize(x) for x in extras}
        for raw in m.dist.requires:
            only = _EXTRA_ONLY.match(raw)
            if only is not None and normalize(only.group(2)) not in asked:
                continue  # `; extra == "test"` and nobody asked for [test]
            try:
                req = Requirement(raw)
            except InvalidRequirement as exc:
                self.findings.append(
                    Finding(
                        "bad-requirement",
                        f"{m.dist.name} {m.dist.version} declares an unparseable requirement "
                        f"{raw!r} ({exc}); ignored",
                    )
                )
                continue
            if req.marker is not None and not _eval_marker(req.marker, self.markers, extras):
                continue
            child = self.index.get(req.name)
            if child is None:
                self.findings.append(
                    Finding(
                        "requirement-missing",
                        f"{m.dist.name} {m.dist.version} requires {req} but {req.name} is not "
                        "installed in the target environment",
                    )
                )
                continue
            if req.specifier and not req.specifier.contains(child.version, prereleases=True):
                self.findings.append(
                    Finding(
                        "requirement-unsatisfied",
                        f"{m.dist.name} {m.dist.version} requires {req} but {child.name} "
                        f"{child.version} is installed; pinned to the installed version",
                    )
                )
            self._edge(m, child, _strip_extra(req.marker))
            self.queue.append((child.key, frozenset(req.extras)))
        if self.installed_extras and m.direct and "" in extras:
            self._installed_extra_edges(m)

    def _installed_extra_edges(self, m: _Member) -> None:
        """Follow extras nobody asked for whose requirements are *all* installed.

        Installed metadata never records which extras were requested, and libraries import
        their extras lazily by name (`pandas.Series.plot` -> matplotlib, `nx.draw` -> scipy via
        `networkx[default]`): invisible to syntax, fatal on a bare node. An extra fully present
        in the environment is the best evidence we have that the user installed it on purpose,
        so its members join the closure as *optional* (never making anything required).
        Only the extras of distributions the code imports directly are followed (not of their
        requirements, nor transitively), and development extras (test, docs, lint, all, ...)
        never are.
        """
        from packaging.requirements import InvalidRequirement, Requirement

        by_extra: dict[str, list[Requirement]] = {}
        for raw in m.dist.requires:
            if "extra" not in raw:
                continue
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                continue  # already reported by _pip_edges
            if req.marker is None:
                continue
            for extra in _extras_named(str(req.marker)):
                if _DEV_EXTRA.match(extra) or extra in m.extras_done:
                    continue
                if req.marker.evaluate({**self.markers, "extra": extra}):
                    by_extra.setdefault(extra, []).append(req)
        for extra, all_reqs in sorted(by_extra.items()):
            # `pandas[feather]` may list `pandas[pyarrow]`: a self-reference adds nothing here.
            reqs = [r for r in all_reqs if normalize(r.name) != m.dist.key]
            children = [self.index.get(r.name) for r in reqs]
            if not children or any(c is None for c in children):
                continue
            for req, child in zip(reqs, children, strict=True):
                assert child is not None
                known = child.key in self.members
                hard = child.key in m.children
                cm = self._edge(m, child, None)
                if not hard:
                    m.children.discard(child.key)
                    m.soft_children.add(child.key)
                label = f"{m.dist.name}[{extra}]"
                if m.dist.name in cm.required_by:
                    cm.required_by[cm.required_by.index(m.dist.name)] = label
                if not known:
                    self.queue.append((child.key, frozenset(req.extras)))
            self.findings.append(
                Finding(
                    "extra-included",
                    f"{m.dist.name}[{extra}] is fully installed; its members "
                    f"({', '.join(sorted(c.name for c in children if c is not None))}) ship as "
                    "optional because the library may import them lazily "
                    "(pack --exclude NAME leaves one out)",
                    severity="info",
                )
            )

    def _conda_edges(self, m: _Member) -> None:
        for raw in m.dist.requires:
            name, spec = _parse_conda_dep(raw)
            if name.startswith("__"):
                continue  # virtual package (__glibc, __unix): provided by the host
            child = self.index.get(name)
            if child is None:
                self.findings.append(
                    Finding(
                        "requirement-missing",
                        f"conda package {m.dist.name} {m.dist.version} depends on {raw!r} but "
                        f"no {name} record is installed",
                    )
                )
                continue
            if spec and _conda_version_ok(child.version, spec) is False:
                self.findings.append(
                    Finding(
                        "requirement-unsatisfied",
                        f"conda package {m.dist.name} {m.dist.version} depends on {raw!r} but "
                        f"{child.name} {child.version} is installed; pinned to the installed version",
                    )
                )
            self._edge(m, child, None)
            self.queue.append((child.key, frozenset()))

    def required_keys(self) -> set[str]:
        """Members reachable from a non-optional direct import."""
        seen: set[str] = set()
        todo = [k for k, m in self.members.items() if m.direct and not m.direct_optional]
        while todo:
            k = todo.pop()
            if k in seen:
                continue
            seen.add(k)
            todo.extend(self.members[k].children)
        return seen

    def packages(self) -> tuple[Package, ...]:
        required = self.required_keys()
        out = []
        for key in sorted(self.members):
            m = self.members[key]
            d = m.dist
            out.append(
                Package(
                    name=d.name,
                    version=d.version,
                    source=d.source,
                    direct=m.direct,
                    required_by=tuple(m.required_by),
                    optional=key not in required,
                    requirement=_requirement_line(d, m.markers),
                    build=d.build,
                )
            )
        return tuple(out)


_SUBDIRS = ("linux-64", "linux-aarch64", "linux-ppc64le", "osx-64", "osx-arm64", "win-64", "noarch")


_EXTRA_NAME = re.compile(r"""extra\s*==\s*(['"])([^'"]+)\1""")


def _extras_named(marker: str) -> set[str]:
    return {normalize(m.group(2)) for m in _EXTRA_NAME.finditer(marker)}


def channel_name(channel: str | None) -> str | None:
    """conda-meta's channel (often a URL with the subdir) as a channel name for a spec.

    `https://conda.anaconda.org/conda-forge/linux-64` -> `conda-forge`,
    `https://repo.anaconda.com/pkgs/main/linux-64` -> `pkgs/main`; other URLs keep their
    address minus the subdir; `<unknown>` (pip-installed records) -> None.
    """
    if not channel or channel.startswith("<"):
        return None
    ch = channel.rstrip("/")
    if ch.rsplit("/", 1)[-1] in _SUBDIRS:
        ch = ch.rsplit("/", 1)[0]
    for host in (
        "https://conda.anaconda.org/",
        "http://conda.anaconda.org/",
        "https://repo.anaconda.com/",
        "http://repo.anaconda.com/",
    ):
        if ch.startswith(host):
            return ch[len(host) :] or None
    return ch


def _requirement_line(d: Distribution, markers: Sequence[str | None]) -> str:
    """`name==version` (pip) / `channel::name=version=build` (conda), with a marker when every
    edge had it. The conda form is a MatchSpec that environment.yml accepts as is."""
    if d.source == "conda":
        spec = f"{d.name}={d.version}={d.build}" if d.build else f"{d.name}={d.version}"
        chan = channel_name(d.channel)
        return f"{chan}::{spec}" if chan else spec
    line = f"{d.name} @ {d.direct_url}" if d.direct_url else f"{d.name}=={d.version}"
    distinct = set(markers)
    if markers and None not in distinct and len(distinct) == 1:
        line += f" ; {markers[0]}"
    return line


def compute_closure(
    resolved: Sequence[ResolvedImport],
    env: EnvInfo,
    index: DistIndex,
    installed_extras: bool = True,
    metadata_lookups: Sequence[str] = (),
    source: Sequence[str] = (),
    include: Sequence[str] = (),
) -> tuple[tuple[Package, ...], tuple[Finding, ...]]:
    """Direct third-party distributions plus their installed requirements, pinned.

    With `installed_extras`, extras whose requirements are all installed join as optional
    members (see `_Closure._installed_extra_edges`). `metadata_lookups` names distributions
    whose metadata reached code reads (`importlib.metadata.version("x")`): their dist-info must
    ship, so they join as direct members even when nothing imports them. `source` names
    editable installs followed as the user's own code: when one is a member (its metadata is
    read, or an installed package requires it) its `Requires-Dist` is not followed, because
    the imports of its code already are. `include` names distributions the user asked for
    (`pack --include`): direct, required members labelled `<include>`, with their closure.
    """
    optional: dict[str, bool] = {}
    for r in resolved:
        if r.kind == "third-party" and r.distribution:
            optional[r.distribution] = optional.get(r.distribution, True) and r.site.optional
    for name in metadata_lookups:
        dist = index.get(name)
        if dist is not None:
            optional[dist.key] = False
    src = frozenset(k for k in (normalize(n) for n in source))
    inc = sorted({d.key for d in (index.get(n) for n in include) if d is not None})
    key = _cache_key(index, env, optional, sorted(src), inc) + ("-x" if installed_extras else "")
    hit = _cache_load(key)
    if hit is not None:
        return hit
    c = _Closure(env, index, installed_extras, src)
    for name in sorted(optional):
        c.add_direct(name, optional[name])
    for name in inc:
        c.add_direct(name, False, INCLUDE)
    c.run()
    result = c.packages(), tuple(dict.fromkeys(c.findings))
    _cache_store(key, result)
    return result


# --------------------------------------------------------------------------- cache


def _cache_dir() -> Path:
    return user_cache_dir("closure")


def _cache_key(
    index: DistIndex,
    env: EnvInfo,
    direct: dict[str, bool],
    source: list[str],
    include: list[str],
) -> str:
    h = hashlib.sha256()
    with contextlib.suppress(OSError):
        h.update(Path(__file__).read_bytes())  # editing this module invalidates by itself
    payload = [
        __version__,
        index.fingerprint,
        sorted(env.markers),
        sorted(direct.items()),
        source,
        include,
    ]
    h.update(json.dumps(payload).encode())
    return h.hexdigest()


def _cache_load(key: str) -> tuple[tuple[Package, ...], tuple[Finding, ...]] | None:
    try:
        with open(_cache_dir() / f"{key}.json", encoding="utf-8") as fh:
            data = json.load(fh)
        packages = tuple(
            Package(**{**p, "required_by": tuple(p["required_by"])}) for p in data["packages"]
        )
        findings = tuple(Finding(**f) for f in data["findings"])
    except (OSError, ValueError, TypeError, KeyError):
        return None  # missing or unreadable: recompute
    return packages, findings


def _cache_store(key: str, result: tuple[tuple[Package, ...], tuple[Finding, ...]]) -> None:
    """Best effort: a read-only or full cache directory must not fail the analysis."""
    packages, findings = result
    data: dict[str, Any] = {
        "packages": [asdict(p) for p in packages],
        "findings": [asdict(f) for f in findings if f.location is None],
    }
    if len(data["findings"]) != len(findings):
        return  # findings with locations are not produced here; never cache what we can't restore
    with contextlib.suppress(OSError), atomic_open(_cache_dir() / f"{key}.json", "w") as fh:
        json.dump(data, fh, separators=(",", ":"))


# --------------------------------------------------------------------------- why


def why_target(name: str, analysis: Analysis) -> str | None:
    """The closure member (or editable install) `--why NAME` is about, by any of its names.

    NAME may be a distribution (`scikit-learn`, `scikit_learn`), an import name (`sklearn`,
    `PIL.Image`) of a reached import, or an editable install followed as local code.
    """
    key = normalize(name)
    for p in analysis.packages:
        if normalize(p.name) == key:
            return p.name
    for e in analysis.editables:
        if normalize(e.name) == key or name in e.names:
            return e.name
    for r in (*analysis.imports, *analysis.unresolved):
        mod = r.site.module
        if r.distribution and (mod == name or mod.startswith(name + ".")):
            for p in analysis.packages:
                if normalize(p.name) == normalize(r.distribution):
                    return p.name
    top = name.split(".")[0]
    for e in analysis.editables:
        if top in e.names:
            return e.name
    return None


def _site_label(r: ResolvedImport) -> str:
    s = r.site
    notes = []
    if s.optional:
        notes.append("guarded: optional" if s.hint is None else f"hint: {s.hint}")
    if s.dynamic:
        notes.append("dynamic")
    extra = f", {', '.join(notes)}" if notes else ""
    return f"{s.location} (import {s.module}{extra})"


def why(name: str, analysis: Analysis, limit: int = 50) -> list[list[str]]:
    """Chains [call chain..., `file:line (import mod)`, direct package, ..., NAME], shortest first.

    The call chain is the import site's `via` (target function -> helpers that reach the
    import), so the answer reads from the user's function to the package. Guarded imports
    say so (`guarded: optional`), members brought in by an installed extra name it
    (`pandas[plot]`), `--include` members start with `--include NAME`, and an editable install
    followed as local code ends with `NAME (editable, shipped as source)`. NAME may be an
    import name (`sklearn`). Empty when NAME is in neither the closure nor the local code.
    Cycles are cut; at most `limit` chains.
    """
    target = why_target(name, analysis) or name
    by_key = {normalize(p.name): p for p in analysis.packages}
    editable = {normalize(e.name): e for e in analysis.editables}
    goal = by_key.get(normalize(target))
    chains: list[list[str]] = []
    if normalize(target) in editable:
        e = editable[normalize(target)]
        tail = f"{e.name} (editable {e.style} install, shipped as source: {e.mode})"
        roots = tuple(r.rstrip("/") + "/" for r in e.roots)
        seen: set[tuple[str, ...]] = set()
        for r in analysis.imports:
            if r.site.location.path.startswith(roots) and r.site.via not in seen:
                seen.add(r.site.via)
                chains.append([*r.site.via, tail])
        if not chains:
            chains.append([e.reason, tail])
        if goal is None:
            chains.sort(key=len)
            return chains[:limit]
    if goal is None:
        return []
    sites: dict[str, list[tuple[str, ...]]] = {}
    for r in analysis.imports:
        if r.distribution:
            label = (*r.site.via, _site_label(r))
            lst = sites.setdefault(normalize(r.distribution), [])
            if label not in lst:
                lst.append(label)
    from lfm_pack.analyze.reach_metadata import METADATA_LOOKUP, lookup_distribution

    for f in analysis.findings:
        looked = lookup_distribution(f.message) if f.code == METADATA_LOOKUP else None
        if looked is not None and f.location is not None:
            lst = sites.setdefault(normalize(looked), [])
            lst.append((f"{f.location} (reads its installed metadata)",))
    # breadth-first backwards from the goal over required_by edges; each path element is
    # (display label, member key)
    queue: deque[list[tuple[str, str]]] = deque([[(goal.name, normalize(goal.name))]])
    while queue and len(chains) < limit:
        path = queue.popleft()
        head = by_key[path[0][1]]
        shown = [label for label, _ in path]
        for parent in head.required_by:
            if parent == IMPORT:
                for label in sites.get(normalize(head.name), [(f"{IMPORT} {head.name}",)]):
                    chains.append([*label, *shown])
                continue
            if parent == INCLUDE:
                chains.append([f"--include {head.name}", *shown])
                continue
            base, bracket, _ = parent.partition("[")
            pkey = normalize(base)
            if pkey not in by_key or any(k == pkey for _, k in path):
                continue
            step = by_key[pkey].name + (
                f"[{parent.partition('[')[2]} (installed extra, optional)" if bracket else ""
            )
            queue.append([(step, pkey), *path])
    if not chains and goal.direct:
        chains.append([f"{IMPORT} {goal.name}"])
    chains.sort(key=len)
    return chains[:limit]
