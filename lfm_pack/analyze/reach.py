"""Per-function reachability: which imports (and which local files) one function really needs.

Each file is summarised once into units (reach_units.py: `<module>` import-time code, `<main>`,
one unit per function/method) and this module walks that graph breadth-first from the targets:

* reaching any unit of a module imports the module, so its `<module>` unit (and its parent
  packages' `__init__`) is reached too;
* a read of a module-level name reaches the def (its unit), the class (all its methods,
  conservatively) or the import statement that binds it; import statements are declarations
  and only the ones whose names reached code reads are *needed*;
* a needed import of a local module (found under a local root) is followed at the same
  granularity: `from helpers import load` reaches `load`, `helpers.load()` reaches `load`, a
  bare module object escaping reaches all of it; anything else becomes an `ImportSite`.

Everything is breadth-first so each `via` chain is a shortest call path from a target. The
shipped local modules are imported whole at run time, so their module-level imports that no
reached code needs are returned as `Placeholder`s (docs/architecture.md, "the per-function
promise"). Functions run from the shipped files (by value), not pickled by reference, which is
why a module's unreached functions cost nothing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from lfm_pack.analyze.modpath import ModuleLocation, find_module
from lfm_pack.analyze.reach_cache import summarize_cached
from lfm_pack.analyze.reach_metadata import METADATA_LOOKUP
from lfm_pack.analyze.reach_summary import (
    MAIN_UNIT,
    MODULE_UNIT,
    Binding,
    FileSummary,
    GuardEnv,
    ImportStmt,
    Ref,
    Unit,
)
from lfm_pack.analyze.targets import read_source_bytes
from lfm_pack.errors import TargetError
from lfm_pack.models import (
    EnvInfo,
    Finding,
    ImportSite,
    Location,
    Placeholder,
    ReachResult,
    Severity,
    TargetSpec,
)

_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")

UnitKey = tuple[str, str]  # (dotted module name, unit id)


@dataclass
class _Module:
    """A local module: its summary plus fast lookup tables."""

    name: str
    path: str | None  # None for a namespace package (no code)
    root: str
    is_package: bool
    summary: FileSummary | None
    units: dict[str, Unit] = field(default_factory=dict)
    bindings: dict[str, tuple[Binding, ...]] = field(default_factory=dict)
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.summary is not None:
            self.units = self.summary.unit_map()
            self.bindings = self.summary.binding_map()
            self.classes = self.summary.class_map()

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]

    def stmt(self, sid: int) -> ImportStmt:
        assert self.summary is not None
        return self.summary.stmts[sid]


def _under(path: str, root: str) -> bool:
    root = root.rstrip(os.sep)
    return path == root or path.startswith(root + os.sep)


def uses_relative_imports(path: str) -> bool:
    """True when the file has a `from .x import y` statement or reads `__package__`.

    Such a file only works as part of its package (`python pkg/job.py` would fail with
    "attempted relative import with no known parent package"), so it must be imported as
    `pkg.job`. Scanned with `tokenize` (flat, no recursion, no libcst), so it is cheap, cannot
    overflow the stack on deeply nested code and gives the pack the same answer as `reach`.
    An unreadable or untokenizable file counts as not relative: `reach` reports it anyway.
    """
    import tokenize

    try:
        with open(path, "rb") as fh:
            tokens = tokenize.tokenize(fh.readline)
            prev: tokenize.TokenInfo | None = None
            for tok in tokens:
                if tok.type == tokenize.NAME and tok.string == "__package__":
                    return True  # importlib.import_module(".x", __package__) and friends
                if (
                    prev is not None
                    and prev.type == tokenize.NAME
                    and prev.string == "from"
                    and tok.type == tokenize.OP
                    and tok.string in (".", "...")
                ):
                    return True
                if tok.type not in (tokenize.NL, tokenize.COMMENT):
                    prev = tok
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return False
    return False


def _package_root(path: str) -> tuple[str, str, bool]:
    """(root, dotted name, is_package): climb while the directories have an __init__.py."""
    directory, base = os.path.split(os.path.abspath(path))
    stem = base[:-3] if base.endswith(".py") else base
    is_package = stem == "__init__"
    parts = [] if is_package else [stem]
    if is_package:
        parts.insert(0, os.path.basename(directory))
        directory = os.path.dirname(directory)
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        parts.insert(0, os.path.basename(directory))
        directory = os.path.dirname(directory)
    return directory, ".".join(parts), is_package


def target_root(path: str, relative: bool | None = None) -> tuple[str, str, bool]:
    """(root, dotted module name, is_package) a *file* target is imported as, like Python.

    `python pkg/job.py` puts `pkg/` itself first on sys.path and runs the file as a top-level
    module, so a plain `import helpers` next to it works: by default a file is `job` from its
    own directory. A file that uses relative imports only works inside its package, so it is
    `pkg.job` from the first parent directory without `__init__.py`; so is a package's
    `__init__.py` (a directory target). `relative` overrides the detection (None = read the
    file with `uses_relative_imports`). The pack and the runner must use this same answer:
    the shipped target is imported as the returned name with the returned root on sys.path.
    """
    directory, base = os.path.split(os.path.abspath(path))
    if base == "__init__.py":
        return _package_root(path)
    if relative is None:
        relative = os.path.isfile(os.path.join(directory, "__init__.py")) and (
            uses_relative_imports(path)
        )
    if relative:
        return _package_root(path)
    stem = base[:-3] if base.endswith(".py") else base
    return directory, stem, False


def src_root(start: str) -> str | None:
    """`<project>/src` when `start` lies in a project (pyproject/setup/.git) with a src/ dir."""
    current = os.path.abspath(start)
    while True:
        if any(os.path.exists(os.path.join(current, m)) for m in _PROJECT_MARKERS):
            src = os.path.join(current, "src")
            return src if os.path.isdir(src) else None
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


class _Walker:
    """One reachability run over a set of targets (state lives here, not in globals)."""

    def __init__(self, env: EnvInfo, roots: Sequence[str]) -> None:
        self.env = env
        self.genv = GuardEnv.from_markers(env.version, env.markers_dict)
        self.roots = list(dict.fromkeys(roots))
        self.nonlocal_dirs = tuple(
            d for d in (*env.site_packages, env.stdlib_dir, env.platstdlib_dir) if d
        )
        self.search = [*self.roots, *(p for p in env.sys_path if p not in self.roots)]
        self.modules: dict[str, _Module | None] = {}
        self.found: dict[str, ModuleLocation | None] = {}
        self.parent: dict[UnitKey, UnitKey | None] = {}
        self.queue: deque[UnitKey] = deque()
        self.needed: set[tuple[str, int]] = set()
        self.resolved: set[tuple[str, str, tuple[str, ...]]] = set()
        self.whole: set[str] = set()
        self.sites: dict[tuple[str, str, int, int, bool], ImportSite] = {}
        self.findings: dict[tuple[str, str, int, str], Finding] = {}
        self.shadow_checked: set[str] = set()

    # ------------------------------------------------------------ module lookup
    def find(self, name: str) -> ModuleLocation | None:
        if name not in self.found:
            self.found[name] = find_module(name, self.search, self.env.ext_suffixes)
        return self.found[name]

    def _is_local(self, loc: ModuleLocation) -> bool:
        if loc.path is None:
            places: Iterable[str] = loc.search_locations
        else:
            places = (loc.path,)
        for place in places:
            # The deepest enclosing directory decides: a project inside a venv is local, a
            # venv inside a project is not (a root that *is* site-packages wins the tie).
            best = max(
                (
                    (len(d), is_root)
                    for is_root, dirs in ((False, self.nonlocal_dirs), (True, self.roots))
                    for d in dirs
                    if _under(place, d)
                ),
                default=None,
            )
            if best is not None and best[1]:
                return True
        return False

    def local(self, name: str) -> _Module | None:
        """The local module `name` (loaded and summarised once), or None if not local."""
        if name in self.modules:
            return self.modules[name]
        mod: _Module | None = None
        top = name.split(".")[0]
        loc = None if top in self.env.builtin_modules else self.find(name)
        if loc is not None and self._is_local(loc):
            mod = self._load(name, loc.path, loc.root, loc.is_package)
        self.modules[name] = mod
        return mod

    def register(self, name: str, path: str, root: str, is_package: bool) -> _Module:
        mod = self._load(name, path, root, is_package)
        self.modules[name] = mod
        return mod

    def _load(self, name: str, path: str | None, root: str, is_package: bool) -> _Module:
        summary: FileSummary | None = None
        if path is not None and path.endswith(".py"):
            try:
                # Size, regular file, encoding: the same rules as for a target.
                data, text = read_source_bytes(path)
            except (OSError, TargetError) as exc:
                msg = exc.message if isinstance(exc, TargetError) else str(exc)
                self.finding("unreadable-local", f"cannot read local module {name}: {msg}", path, 1)
            else:
                summary = summarize_cached(data, text, self.genv)
                if summary.syntax_error is not None:
                    line, msg = summary.syntax_error
                    self.finding(
                        "syntax-error-local",
                        f"local module {name} does not parse ({msg}); shipped unanalysed",
                        path,
                        line,
                    )
        return _Module(name, path, root, is_package, summary)

    # ------------------------------------------------------------ evidence
    def label(self, key: UnitKey) -> str:
        mod = self.modules.get(key[0])
        if mod is None or mod.path is None:
            return f"{key[0]}:{key[1]}"
        return f"{os.path.relpath(mod.path, mod.root)}:{key[1]}"

    def via(self, key: UnitKey) -> tuple[str, ...]:
        chain: list[str] = []
        cur: UnitKey | None = key
        seen: set[UnitKey] = set()
        while cur is not None and cur not in seen:
            seen.add(cur)
            chain.append(self.label(cur))
            cur = self.parent.get(cur)
        return tuple(reversed(chain))

    def site(
        self,
        module: str,
        mod: _Module,
        line: int,
        column: int,
        key: UnitKey,
        *,
        optional: bool = False,
        dynamic: bool = False,
        hint: str | None = None,
    ) -> None:
        path = mod.path or ""
        k = (module, path, line, column, hint is not None)
        if k in self.sites:
            return
        self.sites[k] = ImportSite(
            module=module,
            location=Location(path, line, column),
            via=self.via(key),
            optional=optional or hint is not None,
            dynamic=dynamic,
            hint=hint,
        )

    def finding(
        self, code: str, message: str, path: str, line: int, severity: Severity = "warning"
    ) -> None:
        k = (code, path, line, message)  # two lookups on one line are two findings
        if k not in self.findings:
            self.findings[k] = Finding(code, message, Location(path, line), severity)

    # ------------------------------------------------------------ reaching units
    def reach_unit(self, key: UnitKey, parent: UnitKey | None) -> None:
        if key in self.parent:
            return
        self.parent[key] = parent
        self.queue.append(key)
        if key[1] != MODULE_UNIT:
            self.ensure_imported(key[0], parent if parent is not None else key)

    def ensure_imported(self, name: str, by: UnitKey | None) -> None:
        """Importing `a.b.c` runs the `<module>` code of a, a.b and a.b.c (the local ones)."""
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            mod = self.local(prefix)
            if mod is None or mod.path is None:
                continue
            self._check_shadow(mod)
            self.reach_unit((prefix, MODULE_UNIT), by)

    def _check_shadow(self, mod: _Module) -> None:
        top = mod.name.split(".")[0]
        if "." in mod.name or top in self.shadow_checked or mod.path is None:
            return
        self.shadow_checked.add(top)
        if top in self.env.stdlib_modules:
            self.finding(
                "shadows-stdlib",
                f"local module {top!r} ({mod.path}) shadows the standard library module "
                f"of the same name",
                mod.path,
                1,
            )
        else:
            other = find_module(top, self.env.sys_path, self.env.ext_suffixes)
            if other is not None and not self._is_local(other):
                self.finding(
                    "shadows-installed",
                    f"local module {top!r} ({mod.path}) shadows the installed {top!r} "
                    f"({other.path or other.search_locations[0]}); the local one is used",
                    mod.path,
                    1,
                    "info",
                )

    def reach_class(self, mod: _Module, qual: str, by: UnitKey) -> None:
        for uid in mod.classes.get(qual, ()):
            self.reach_unit((mod.name, uid), by)
        self.ensure_imported(mod.name, by)

    def whole_module(self, mod: _Module, by: UnitKey) -> None:
        """A module object escapes (passed around, `getattr`): everything in it may run."""
        self.ensure_imported(mod.name, by)
        if mod.name in self.whole or mod.summary is None:
            return
        self.whole.add(mod.name)
        for uid in mod.units:
            if uid != MAIN_UNIT:
                self.reach_unit((mod.name, uid), by)
        for st in mod.summary.stmts:
            if st.top:
                self.execute(mod, st, (mod.name, MODULE_UNIT))

    def run(self) -> None:
        while self.queue:
            key = self.queue.popleft()
            mod = self.modules.get(key[0])
            if mod is None or mod.summary is None:
                continue
            unit = mod.units.get(key[1])
            if unit is None:
                continue
            self.process(mod, unit, key)

    def process(self, mod: _Module, unit: Unit, key: UnitKey) -> None:
        assert mod.summary is not None and mod.path is not None
        for sid in unit.imports:
            self.execute(mod, mod.stmt(sid), key)
        if unit.id == MODULE_UNIT:
            for st in mod.summary.stmts:
                if st.top and st.names == (("*", None),):
                    self.execute(mod, st, key)
        for ref in unit.refs:
            self.resolve_ref(mod, ref, key)
        for dyn in unit.dyns:
            self.dynamic(
                mod, dyn.module, dyn.package, dyn.optional, dyn.code, dyn.line, dyn.column, key
            )
        for h in unit.hints:
            self.site(h.module, mod, h.line, h.column, key, hint=h.hint)
        for f in unit.findings:
            # A metadata lookup fails at run time unless its dist-info ships: worth a warning.
            severity: Severity = "warning" if f.code == METADATA_LOOKUP else "info"
            self.finding(f.code, f.message, mod.path, f.line, severity)

    # ------------------------------------------------------------ imports
    def absolute(self, mod: _Module, level: int, module: str, line: int) -> str | None:
        if level == 0:
            return module
        parts = mod.package.split(".") if mod.package else []
        if level - 1 >= len(parts):
            self.finding(
                "relative-import-beyond-top",
                f"relative import {'.' * level}{module} goes beyond the top-level package "
                f"(module {mod.name!r})",
                mod.path or "",
                line,
            )
            return None
        base = parts[: len(parts) - (level - 1)]
        return ".".join([*base, module] if module else base)

    def import_chain(self, dotted_name: str, mod: _Module, st: ImportStmt, key: UnitKey) -> None:
        """`import a.b.c`: follow local prefixes, record the first non-local one as a site."""
        parts = dotted_name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            local = self.local(prefix)
            if local is None:
                self.site(dotted_name, mod, st.line, st.column, key, optional=st.optional)
                return
            self.ensure_imported(prefix, key)

    def execute(self, mod: _Module, st: ImportStmt, key: UnitKey) -> None:
        """The statement runs: every module it imports is imported (idempotent)."""
        if (mod.name, st.id) in self.needed:
            return
        self.needed.add((mod.name, st.id))
        if st.kind == "import":
            for name, _ in st.names:
                if name:
                    self.import_chain(name, mod, st, key)
            return
        base = self.absolute(mod, st.level, st.module, st.line)
        if base is None:
            return
        base_local = self.local(base)
        if base_local is None:
            if st.names == (("*", None),):
                self.site(base, mod, st.line, st.column, key, optional=st.optional)
                return
            for name, _ in st.names:
                sub = f"{base}.{name}"
                loc = self.find(base)
                module = sub if loc is not None and loc.is_package and self.find(sub) else base
                self.site(module, mod, st.line, st.column, key, optional=st.optional)
            return
        self.import_chain(base, mod, st, key)
        for name, _ in st.names:
            if name == "*" or name in base_local.bindings:
                continue
            sub = f"{base}.{name}"
            if base_local.is_package and self.local(sub) is not None:
                self.ensure_imported(sub, key)
            elif base_local.is_package and self.find(sub) is not None:
                self.site(sub, mod, st.line, st.column, key, optional=st.optional)
            elif self._defines_nothing_named(base_local):
                self.finding(
                    "unresolved-local-name",
                    f"{base_local.name} ({base_local.path}) defines no {name!r} and has no "
                    f"submodule of that name; 'from {base} import {name}' will fail",
                    mod.path or "",
                    st.line,
                )

    @staticmethod
    def _defines_nothing_named(mod: _Module) -> bool:
        """True when no star import, `__getattr__` or parse failure could supply a name."""
        if mod.summary is None or mod.summary.syntax_error is not None:
            return False
        if "__getattr__" in mod.bindings:
            return False
        return not any(st.top and st.names == (("*", None),) for st in mod.summary.stmts)

    def resolve_ref(self, mod: _Module, ref: Ref, key: UnitKey) -> None:
        if ref.kind == "g":
            self.resolve_name(mod, ref.name, ref.attrs, key)
        elif ref.kind == "m":
            self.whole_module(mod, key)
        elif ref.kind == "s":
            if not ref.attrs:
                return
            qual = f"{ref.name}.{ref.attrs[0]}"
            if qual in mod.units:
                self.reach_unit((mod.name, qual), key)
            elif qual in mod.classes:
                self.reach_class(mod, qual, key)
        else:
            st = mod.stmt(ref.stmt)
            self.execute(mod, st, key)
            name, asname = st.names[ref.alias]
            if st.kind == "import":
                bound = name if asname is not None else name.split(".")[0]
                self.module_attrs(bound, ref.attrs, mod, st, key)
                return
            base = self.absolute(mod, st.level, st.module, st.line)
            if base is None or name == "*":
                return
            target = self.local(base)
            if target is not None:
                self.resolve_name(target, name, ref.attrs, key)
            else:
                loc = self.find(base)
                if loc is not None and loc.path is None:
                    self.module_attrs(f"{base}.{name}", ref.attrs, mod, st, key)

    def module_attrs(
        self, name: str, attrs: tuple[str, ...], mod: _Module, st: ImportStmt, key: UnitKey
    ) -> None:
        """The module object `name` is read with attribute chain `attrs`."""
        target = self.local(name)
        if target is not None:
            if attrs:
                self.resolve_name(target, attrs[0], attrs[1:], key)
            else:
                self.whole_module(target, key)
            return
        loc = self.find(name)
        if loc is not None and loc.path is None and attrs:
            # A namespace package: only its portions' submodules carry code (google.protobuf).
            for i in range(1, len(attrs) + 1):
                cand = ".".join([name, *attrs[:i]])
                if self.local(cand) is not None:
                    self.module_attrs(cand, attrs[i:], mod, st, key)
                    return
                found = self.find(cand)
                if found is None:
                    return
                if found.path is not None:
                    self.site(cand, mod, st.line, st.column, key, optional=st.optional)
                    return

    def resolve_name(self, mod: _Module, name: str, attrs: tuple[str, ...], key: UnitKey) -> None:
        """Reading `mod.name` (module-level name, through re-exports and submodules)."""
        memo = (mod.name, name, attrs)
        if memo in self.resolved:
            return
        self.resolved.add(memo)
        self.ensure_imported(mod.name, key)
        bindings = mod.bindings.get(name, ())
        for b in bindings:
            if b.kind == "def":
                self.reach_unit((mod.name, b.target), key)
            elif b.kind == "class":
                self.reach_class(mod, b.target, key)
            elif b.kind == "imp":
                self.resolve_ref(mod, Ref("i", stmt=b.stmt, alias=b.alias, attrs=attrs), key)
        if bindings:
            return
        if mod.is_package:
            sub = self.local(f"{mod.name}.{name}")
            if sub is not None:
                self.ensure_imported(sub.name, key)
                if attrs:
                    self.resolve_name(sub, attrs[0], attrs[1:], key)
                else:
                    self.whole_module(sub, key)
                return
        if mod.summary is None:
            return
        for st in mod.summary.stmts:
            if st.top and st.names == (("*", None),):
                self.execute(mod, st, key)
                base = self.absolute(mod, st.level, st.module, st.line)
                star = self.local(base) if base is not None else None
                if star is not None:
                    self.resolve_name(star, name, attrs, key)
        if "__getattr__" in mod.bindings:
            self.resolve_name(mod, "__getattr__", (), key)

    def dynamic(
        self,
        mod: _Module,
        module: str | None,
        package: str | None,
        optional: bool,
        code: str,
        line: int,
        column: int,
        key: UnitKey,
    ) -> None:
        path = mod.path or ""
        if module is None:
            self.finding(
                "dynamic-import",
                f"dynamic import with a non-literal name: {code} — lfm-pack cannot tell "
                "which module it loads; add it with --include or import it statically",
                path,
                line,
            )
            return
        if module.startswith("."):
            if package == "<current>":
                package = mod.package
            if not package:
                self.finding(
                    "dynamic-import",
                    f"relative dynamic import without a literal package: {code}",
                    path,
                    line,
                )
                return
            level = len(module) - len(module.lstrip("."))
            parts = package.split(".")
            if level - 1 >= len(parts):
                return
            base = parts[: len(parts) - (level - 1)]
            rest = module.lstrip(".")
            module = ".".join([*base, rest] if rest else base)
        target = self.local(module)
        if target is not None:
            self.ensure_imported(module, key)
            self.whole_module(target, key)
            return
        top = self.local(module.split(".")[0])
        if top is not None:  # a local package, but the submodule is not there
            self.ensure_imported(top.name, key)
        self.site(module, mod, line, column, key, optional=optional, dynamic=True)

    # ------------------------------------------------------------ results
    def shipped(self) -> list[_Module]:
        return [
            m
            for name, m in self.modules.items()
            if m is not None and m.path is not None and (name, MODULE_UNIT) in self.parent
        ]

    def placeholders(self) -> list[Placeholder]:
        out: list[Placeholder] = []
        for mod in self.shipped():
            if mod.summary is None or mod.path is None:
                continue
            for st in mod.summary.stmts:
                if not st.top or (mod.name, st.id) in self.needed:
                    continue
                if st.names == (("*", None),):
                    continue
                if st.kind == "import":
                    module = ", ".join(n for n, _ in st.names)
                else:
                    module = "." * st.level + st.module
                names = tuple(dict.fromkeys(st.bound(i) for i in range(len(st.names))))
                out.append(Placeholder(mod.path, st.line, st.end_line, module, names))
        return sorted(out, key=lambda p: (p.path, p.line))


def _roots_for(spec: TargetSpec) -> tuple[list[str], str, str, bool]:
    """(local roots in sys.path order, dotted name, root of the target, is_package).

    A file target's own directory comes first (sys.path[0] of `python path/job.py`), then the
    package root it is importable from when it lives in a package (so `from pkg import x`
    and relative imports resolve too), then a project's `src/`. A module target is located
    from its package root only, as `python -m pkg.mod` / `import pkg.mod` would.
    """
    if spec.kind == "module" and spec.module is not None:
        # The root is the path minus the dotted name (pkg/__init__.py counts one more level).
        is_pkg = os.path.basename(spec.path) == "__init__.py"
        root = os.path.dirname(spec.path)
        for _ in range(spec.module.count(".") + (1 if is_pkg else 0)):
            root = os.path.dirname(root)
        roots = [root]
        name = spec.module
    else:
        root, name, is_pkg = target_root(spec.path)
        script_dir = os.path.dirname(os.path.abspath(spec.path))
        package_root = _package_root(spec.path)[0]
        roots = list(dict.fromkeys([script_dir, root, package_root]))
        if is_pkg:  # a package's __init__ is never run as a script: no script dir
            roots = [root]
    src = src_root(os.path.dirname(spec.path))
    if src is not None and src not in roots:
        roots.append(src)
    return roots, name, root, is_pkg


def _in_env(path: str, env: EnvInfo) -> bool:
    dirs = [d for d in (*env.site_packages, env.stdlib_dir, env.platstdlib_dir) if d]
    return any(_under(path, d) for d in dirs)


def reach(
    targets: Sequence[TargetSpec],
    env: EnvInfo,
    extra_roots: Sequence[str] = (),
    whole: Sequence[str] = (),
) -> ReachResult:
    """The imports, local files and placeholders the union of `targets` needs on `env`.

    `extra_roots` are more local roots, searched after the targets' own (editable installs,
    literal `sys.path` edits, `--source-root`: analyze/pipeline.py computes them). `whole`
    names local modules that are reached entirely (every function, every import), as if a
    target used all of them: `--include mod` and editable installs shipped whole.
    """
    plans: list[tuple[TargetSpec, str, str, bool]] = []
    roots: list[str] = []
    installed: list[TargetSpec] = []
    for spec in targets:
        if spec.kind == "module" and _in_env(spec.path, env):
            installed.append(spec)
            continue
        spec_roots, name, root, is_pkg = _roots_for(spec)
        roots.extend(spec_roots)
        plans.append((spec, name, root, is_pkg))
    roots.extend(extra_roots)
    walker = _Walker(env, roots)
    for spec, name, root, is_pkg in plans:
        mod = walker.register(name, spec.path, root, is_pkg)
        if mod.summary is not None and mod.summary.syntax_error is not None:
            # parse_target accepted it, but the analysis could not (over a parse_guard limit).
            line, msg = mod.summary.syntax_error
            raise TargetError(
                f"{spec.path}:{line}: cannot analyse: {msg}",
                hint="simplify the deeply nested code, or target another module",
            )
        start: list[str]
        if spec.qualname is None:
            start = [MODULE_UNIT, MAIN_UNIT]
        elif spec.qualname in mod.classes:
            start = [MODULE_UNIT, *mod.classes[spec.qualname]]
        else:
            start = [MODULE_UNIT, spec.qualname]
            if mod.summary is not None and spec.qualname not in mod.units:
                walker.finding(
                    "target-not-analysed",
                    f"{spec.raw}: {spec.qualname} is not a module-level function or method "
                    "lfm-pack can analyse; only the module's import-time code was followed",
                    spec.path,
                    1,
                )
        # Parent packages' __init__ run before the target module itself.
        if "." in name:
            walker.ensure_imported(name.rpartition(".")[0], None)
        for uid in start:
            walker.reach_unit((name, uid), None)
    for name in whole:
        whole_mod = walker.local(name)
        if whole_mod is not None:
            walker.ensure_imported(name, None)
            walker.whole_module(whole_mod, (name, MODULE_UNIT))
    walker.run()
    for spec in installed:
        assert spec.module is not None
        walker.sites[(spec.module, spec.path, 1, 0, False)] = ImportSite(
            module=spec.module, location=Location(spec.path, 1), via=(spec.raw,)
        )
    sites = sorted(
        walker.sites.values(), key=lambda s: (s.module, s.location.path, s.location.line)
    )
    for s in sites:
        if s.optional and s.hint is None:
            walker.finding(
                "optional-import",
                f"{s.module} is imported under an ImportError guard: packed if installed, "
                "otherwise the fallback runs",
                s.location.path,
                s.location.line,
                "info",
            )
    shipped = walker.shipped()
    local_files = sorted({m.path for m in shipped if m.path is not None})
    # A root is listed when a shipped module was found from it: the script dir and the
    # package root nest, so "a shipped file lies under it" would list both every time.
    found_from = {m.root for m in shipped}
    used_roots = [r for r in walker.roots if r in found_from]
    findings = sorted(
        walker.findings.values(),
        key=lambda f: (
            f.code,
            f.location.path if f.location else "",
            f.location.line if f.location else 0,
            f.message,
        ),
    )
    return ReachResult(
        imports=tuple(sites),
        local_files=tuple(local_files),
        local_roots=tuple(used_roots),
        placeholders=tuple(walker.placeholders()),
        findings=tuple(findings),
    )


def with_guard_env(env: EnvInfo, version: tuple[int, int, int], **markers: str) -> EnvInfo:
    """A copy of `env` as if it were another version/platform (used to test guard evaluation)."""
    merged = {**env.markers_dict, **markers}
    return replace(env, version=version, markers=tuple(sorted(merged.items())))
