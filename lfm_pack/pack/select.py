"""Decide which files go into the pack: closure distributions, scripts, the user's local code.

Only the distributions of the pinned closure are shipped, every file their RECORD lists (the
dist-info too, so `importlib.metadata` works), merged into one `lib/python3.X/site-packages`.
Console scripts get a relocatable shebang; the user's local files go to `.lfm/app/<i>/` at their
path relative to their local root, with unreached imports rewritten (see `slicing`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from lfm_pack.analyze.reach_paths import absolute_module
from lfm_pack.errors import PackError
from lfm_pack.models import Analysis, Distribution, Placeholder, normalize_name
from lfm_pack.pack.archive import Entry
from lfm_pack.pack.slicing import decode_python, rewrite_source

STRIP_CHOICES = ("tests", "docs", "pyi", "pycache")
_TEST_DIRS = frozenset({"tests", "test"})
_DOC_DIRS = frozenset({"doc", "docs"})


class DistLookup(Protocol):
    """What select needs from `analyze.distributions.DistIndex`."""

    def get(self, name: str) -> Distribution | None: ...


@dataclass(frozen=True)
class Options:
    """User choices that change the pack's contents (they are part of the env key)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    strip: frozenset[str] = frozenset()
    extra_files: tuple[str, ...] = ()
    editable_as_source: bool = False  # deprecated: editables always ship as source now
    allow_unrelocatable: bool = False
    skip_optional: bool = False  # leave out closure members reached only via guarded imports
    compile: bool = False


@dataclass(frozen=True)
class Selection:
    """Archive entries of the environment's payload, plus what was left out and why."""

    entries: tuple[Entry, ...]
    distributions: tuple[Distribution, ...]
    excluded: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    app_paths: tuple[str, ...]  # ".lfm/app/0", ... in local-root order
    app_of: tuple[tuple[str, str], ...]  # (absolute local file, arcname)


def relocatable_shebang(exe_name: str) -> bytes:
    """A `#!/bin/sh` header that re-execs the pack's own interpreter next to the script.

    sh runs the `'''exec' ...` line; Python sees the same lines as one string literal.
    """
    return (
        "#!/bin/sh\n"
        f'\'\'\'exec\' "$(dirname -- "$(realpath -- "$0")")/{exe_name}" "$0" "$@"\n'
        "' '''\n"
    ).encode()


_PY_SHEBANG = re.compile(rb"^#!\s*(\S*/)?(python[\d.]*|pypy[\d.]*)(\s.*)?$")
_ENV_SHEBANG = re.compile(rb"^#!\s*/usr/bin/env\s+(python[\d.]*)(\s.*)?$")


def rewrite_script(data: bytes, exe_name: str) -> bytes | None:
    """New content for a Python console script, None if it is no Python script."""
    if not data.startswith(b"#!"):
        return None
    first, _, rest = data.partition(b"\n")
    if _ENV_SHEBANG.match(first) or _PY_SHEBANG.match(first):
        return relocatable_shebang(exe_name) + rest
    # pip's own long-path form: a two-line /bin/sh trampoline ending in ' '''
    if first == b"#!/bin/sh" and rest.startswith(b"'''exec'"):
        _, _, body = rest.partition(b"' '''\n")
        return relocatable_shebang(exe_name) + body
    return None


def is_stripped(rel: str, strip: frozenset[str]) -> bool:
    parts = rel.split("/")
    if "pycache" in strip and ("__pycache__" in parts or rel.endswith((".pyc", ".pyo"))):
        return True
    if "tests" in strip and any(p in _TEST_DIRS for p in parts[:-1]):
        return True
    if "docs" in strip and any(p in _DOC_DIRS for p in parts[:-1]):
        return True
    return "pyi" in strip and rel.endswith(".pyi")


def _under(path: str, roots: Iterable[str]) -> str | None:
    """The longest root `path` lies in."""
    best = None
    for r in roots:
        r = r.rstrip("/")
        if (path == r or path.startswith(r + "/")) and (best is None or len(r) > len(best)):
            best = r
    return best


def dist_entries(
    dist: Distribution,
    analysis: Analysis,
    exe_name: str,
    strip: frozenset[str],
    site_arc: str | None = None,
) -> list[Entry]:
    """Arcnames for every existing file of one pip distribution (merged into `site_arc`)."""
    env = analysis.env
    site_arc = site_arc or default_site_arc(analysis)
    path_roots = [p for p in (*env.site_packages, *env.sys_path) if os.path.isdir(p)]
    bin_dir = os.path.join(env.prefix, "bin")
    out: list[Entry] = []
    for f in dist.files:
        if not os.path.isfile(f):
            continue  # RECORD lists compiled files that were never written, or deleted ones
        f = os.path.normpath(f)
        if os.path.dirname(f) == bin_dir:
            arc = f"bin/{os.path.basename(f)}"
            with open(f, "rb") as fh:
                data = fh.read()
            new = rewrite_script(data, exe_name)
            if new is not None:
                out.append(Entry(arc, data=new, executable=True))
            else:
                out.append(Entry(arc, source=f, executable=os.access(f, os.X_OK)))
            continue
        root = _under(f, path_roots)
        if root is not None:
            rel = os.path.relpath(f, root)
            if is_stripped(rel, strip | {"pycache"}):
                continue
            out.append(Entry(f"{site_arc}/{rel}", source=f, executable=os.access(f, os.X_OK)))
            continue
        root = _under(f, [env.prefix])
        if root is not None:
            rel = os.path.relpath(f, root)
            if "docs" in strip and rel.startswith(("share/doc/", "share/man/")):
                continue
            out.append(Entry(rel, source=f, executable=os.access(f, os.X_OK)))
    return out


def default_site_arc(analysis: Analysis) -> str:
    v = analysis.env.version
    return f"lib/python{v[0]}.{v[1]}/site-packages"


def editable_source_entries(
    dist: Distribution, analysis: Analysis, site_arc: str | None = None
) -> list[Entry]:
    """The source tree(s) an editable install points at, shipped as plain site-packages files."""
    site_arc = site_arc or default_site_arc(analysis)
    dirs: list[tuple[str, str]] = []  # (source dir, arc prefix)
    for f in dist.files:
        if f.endswith(".pth") and os.path.isfile(f):
            with open(f, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    line = line.strip()
                    if line and not line.startswith(("#", "import ")) and os.path.isdir(line):
                        dirs.append((line, site_arc))
        elif os.path.basename(f).startswith("__editable__") and f.endswith("_finder.py"):
            with open(f, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            m = re.search(r"^MAPPING\s*(?::[^=]*)?=\s*(\{.*?\})\s*$", text, re.M | re.S)
            if m:
                for name, path in re.findall(r"'([^']+)'\s*:\s*'([^']+)'", m.group(1)):
                    dirs.append((path, f"{site_arc}/{name}"))
    out: list[Entry] = []
    for src, arc_prefix in dirs:
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(".")
                and d != "__pycache__"
                and not d.endswith((".egg-info", ".dist-info"))
            )
            for fn in sorted(filenames):
                if fn.endswith((".pyc", ".pyo")):
                    continue
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, src)
                out.append(Entry(f"{arc_prefix}/{rel}", source=full))
    # keep its dist-info so importlib.metadata still finds it
    for f in dist.files:
        if os.path.isfile(f) and ".dist-info/" in f:
            di = f[f.rindex("/", 0, f.index(".dist-info/")) + 1 :]
            if not di.endswith(("RECORD", "direct_url.json")):
                out.append(Entry(f"{site_arc}/{di}", source=f))
    return out


def closure_distributions(
    analysis: Analysis, index: DistLookup, opts: Options | None = None
) -> tuple[list[Distribution], list[tuple[str, str]]]:
    """The distributions to ship: the members of `analysis.packages`, and what was left out.

    `analysis` is the pack's own analysis (`analyze.pipeline.for_pack`): `--include`,
    `--exclude` and `--skip-optional` are already applied to its closure, and `excluded` says
    what the options removed and why, so the lock beside the pack describes the archive.
    """
    excluded = [(x.name, x.reason) for x in analysis.excluded]
    dists: dict[str, Distribution] = {}
    for p in analysis.packages:
        d = index.get(p.name)
        if d is None:
            raise PackError(
                f"{p.name} is in the closure but not installed in {analysis.env.prefix}",
                hint="the environment changed since the analysis; re-run lfm-pack analyze",
            )
        dists.setdefault(d.key, d)
    return [dists[k] for k in sorted(dists)], excluded


#: Files of an editable install's metadata that must not travel: RECORD lists the `.pth` /
#: finder hooks (which do not ship), direct_url.json names the home source tree.
_EDITABLE_META_SKIP = frozenset({"RECORD", "direct_url.json", "SOURCES.txt"})


def editable_metadata_entries(metadata_path: str, site_arc: str) -> list[Entry]:
    """An editable install's dist-info (or develop egg-info) for the pack's site-packages.

    Its code ships as local source (`.lfm/app/<i>`); the metadata ships beside the other
    distributions so `importlib.metadata.version("mypkg")` and entry points keep working. Its
    `.pth` and finder hooks never ship: they point at the home source tree, and on a node that
    can see that tree (a shared home) they would load it instead of the packed copy.
    """
    name = os.path.basename(metadata_path.rstrip("/"))
    out: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(metadata_path):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn in _EDITABLE_META_SKIP and dirpath == metadata_path:
                continue
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, metadata_path)
            out.append(Entry(f"{site_arc}/{name}/{rel}", source=full))
    return out


def editable_entries(
    analysis: Analysis, site_arc: str, dists: Sequence[Distribution]
) -> tuple[list[Entry], list[str]]:
    """Entries and notes for every editable install the pack carries.

    An editable install followed as source (`analysis.editables`) ships its reached modules
    with the local files and only its metadata here. An editable closure member that could not
    be followed (a finder mapping a module onto a directory of another name) ships its whole
    source tree as plain site-packages files, as `--editable-as-source` used to.
    """
    entries: list[Entry] = []
    notes: list[str] = []
    followed = {normalize_name(e.name) for e in analysis.editables}
    for e in analysis.editables:
        entries += editable_metadata_entries(e.metadata_path, site_arc)
        how = "whole" if e.mode == "whole" else "reached modules"
        notes.append(
            f"{e.name} {e.version}: editable install shipped as source ({how}, from "
            f"{', '.join(e.roots)})"
        )
    for d in dists:
        if d.editable and d.key not in followed:
            entries += editable_source_entries(d, analysis, site_arc)
            notes.append(
                f"{d.name}: editable install that lfm-pack cannot follow; its whole source tree "
                "ships as plain files and only its declared requirements are in the closure"
            )
    return entries, notes


def _root_arcs(roots: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Each local root's directory in the archive, and the outermost roots.

    A script's own directory is often *inside* the package root it can also be imported from
    (`pkg/job.py` as `job` and as `pkg.job`): such nested roots share the outer root's tree, so
    every file exists once and both import styles work; `.lfm/app/<i>` numbers the outer ones.
    """
    uniq = list(dict.fromkeys(roots))
    outer = [r for r in uniq if _under(r, [o for o in uniq if o != r]) is None]
    arcs = {o: f".lfm/app/{i}" for i, o in enumerate(outer)}
    for r in uniq:
        if r not in arcs:
            o = next(o for o in outer if _under(r, [o]) is not None)
            arcs[r] = f"{arcs[o]}/{os.path.relpath(r, o)}"
    return outer, arcs


def local_entries(
    analysis: Analysis, extra_files: Sequence[str]
) -> tuple[list[Entry], tuple[str, ...], list[tuple[str, str]]]:
    """The user's local files under .lfm/app/<i>/, placeholders rewritten; plus --extra-file."""
    roots = [os.path.abspath(r) for r in analysis.local_roots]
    by_file: dict[str, list[Placeholder]] = {}
    std = analysis.env.stdlib_modules | analysis.env.builtin_modules
    for p in analysis.placeholders:
        if all(m.strip().split(".")[0] in std for m in p.module.split(",")):
            continue  # the stdlib travels anyway: keep the real import, nothing to gain
        by_file.setdefault(os.path.abspath(p.path), []).append(p)
    entries: list[Entry] = []
    app_of: list[tuple[str, str]] = []
    files = list(dict.fromkeys(os.path.abspath(f) for f in analysis.local_files))
    for t in analysis.targets:
        if t.kind == "file" and os.path.abspath(t.path) not in files:
            files.append(os.path.abspath(t.path))
    if not roots and files:
        roots = [os.path.dirname(files[0])]
    outer, arc_of_root = _root_arcs(roots)
    for f in files:
        root = _under(f, outer)
        if root is None:
            raise PackError(
                f"local file {f} lies under none of the local roots {roots}",
                hint="re-run lfm-pack analyze; the lock does not match the files",
            )
        arc = f"{arc_of_root[root]}/{os.path.relpath(f, root)}"
        try:
            with open(f, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise PackError(f"cannot read local file {f}: {exc}") from exc
        if f in by_file:
            src, encoding = decode_python(raw, f)
            # absolute names in the placeholders: their error says `--include pkg._impl`,
            # which works, where `._impl` would give an empty hint
            named = [
                replace(
                    p,
                    module=", ".join(
                        absolute_module(f, m.strip(), roots) for m in p.module.split(",")
                    ),
                )
                for p in by_file[f]
            ]
            raw = rewrite_source(src, named, f).encode(encoding)
        entries.append(Entry(arc, data=raw))
        app_of.append((f, arc))
    for x in extra_files:
        x = os.path.abspath(x)
        root = _under(x, outer)
        if root is None or not os.path.exists(x):
            raise PackError(
                f"--extra-file {x}: must exist inside a local root ({', '.join(roots) or 'none'})",
                hint="extra files keep their path relative to the target's directory",
            )
        walk = (
            [x]
            if os.path.isfile(x)
            else [os.path.join(dp, fn) for dp, _, fns in os.walk(x) for fn in fns]
        )
        for f in sorted(walk):
            arc = f"{arc_of_root[root]}/{os.path.relpath(f, root)}"
            if arc not in {e.arcname for e in entries}:
                entries.append(Entry(arc, source=f, executable=os.access(f, os.X_OK)))
    app_paths = tuple(arc_of_root[r] for r in roots)
    return entries, app_paths, app_of


def _local_candidates(
    analysis: Analysis, importer: str, module: str, names: tuple[str, ...]
) -> list[str]:
    """Files a local import could load: `._impl` beside the importer, `pkg.mod` under a root,
    and for `from . import plotting` the submodules named."""
    if module.startswith("."):
        level = len(module) - len(module.lstrip("."))
        base = os.path.dirname(importer)
        for _ in range(level - 1):
            base = os.path.dirname(base)
        rest = module.lstrip(".")
        bases = [os.path.join(base, *rest.split(".")) if rest else base]
    else:
        bases = [os.path.join(root, *module.split(".")) for root in analysis.local_roots]
    subs = [
        c
        for b in bases
        for n in names
        for c in (os.path.join(b, n) + ".py", os.path.join(b, n, "__init__.py"))
    ]
    if any(os.path.isfile(c) for c in subs):
        return subs  # `from pkg import submodule`: the submodules are what would load
    return [c for b in bases for c in (b + ".py", os.path.join(b, "__init__.py"))]


def placeholder_exclusions(analysis: Analysis) -> list[tuple[str, str]]:
    """Modules whose unreached imports became placeholders and whose files do not ship.

    Stdlib modules travel with the interpreter and are not listed. A local module (relative
    import, or found under a local root) is listed only when its file really stays home: one
    that ships anyway (reached another way) is not "left out".
    """
    std = analysis.env.stdlib_modules | analysis.env.builtin_modules
    shipped = set(analysis.local_files)
    out: list[tuple[str, str]] = []
    for p in analysis.placeholders:
        if p.module.split(".")[0] in std:
            continue
        cands = _local_candidates(analysis, p.path, p.module, p.names)
        existing = [c for c in cands if os.path.isfile(c)]
        if existing:
            if any(c in shipped for c in existing):
                continue
            what = p.module if p.module.strip(".") else p.module + ",".join(p.names)
            out.append((what, f"local module imported at {p.path}:{p.line} but never reached"))
            continue
        out.append((p.module, f"imported at {p.path}:{p.line} but never reached"))
    return out


def select_pip(
    analysis: Analysis, index: DistLookup, opts: Options, site_arc: str | None = None
) -> Selection:
    """Entries for a pip/venv/system environment (the interpreter is planned separately).

    `site_arc` is the site directory the packed interpreter will put on sys.path (Debian's
    system Python uses dist-packages, see `interpreter.site_dir_arc`).
    """
    env = analysis.env
    exe_name = f"python{env.version[0]}.{env.version[1]}"
    dists, excluded = closure_distributions(analysis, index, opts)
    entries: dict[str, Entry] = {}
    ed_entries, notes = editable_entries(analysis, site_arc or default_site_arc(analysis), dists)
    for d in dists:
        if not d.editable:
            for e in dist_entries(d, analysis, exe_name, opts.strip, site_arc):
                entries.setdefault(e.arcname, e)
    for e in ed_entries:
        entries.setdefault(e.arcname, e)
    local, app_paths, app_of = local_entries(analysis, opts.extra_files)
    for e in local:
        entries[e.arcname] = e
    excluded += placeholder_exclusions(analysis)
    return Selection(
        entries=tuple(entries[k] for k in sorted(entries)),
        distributions=tuple(dists),
        excluded=tuple(excluded),
        notes=tuple(notes),
        app_paths=app_paths,
        app_of=tuple(app_of),
    )
