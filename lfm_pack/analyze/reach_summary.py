"""The cacheable per-file unit graph (see reach_units.py) as plain frozen data + JSON.

Kept free of libcst so a warm run (every summary served from the disk cache) never imports the
parser at all: that is most of what makes a warm `lfm-pack analyze` fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

MODULE_UNIT = "<module>"
MAIN_UNIT = "<main>"
SUMMARY_VERSION = 1

RefKind = Literal["g", "i", "s", "m"]


@dataclass(frozen=True)
class Ref:
    """One read: `g` module-level name, `i` a name bound by import stmt `stmt`, `s` self.attr,
    `m` the whole module namespace (`globals()`: any module-level name may be looked up).

    `name` is the global name (g), the class qualname (s); `attrs` is the attribute chain read
    from the bound object (relative to the bound name, so `import a.b` + `a.b.f` gives b, f).
    """

    kind: RefKind
    name: str = ""
    stmt: int = -1
    alias: int = -1
    attrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportStmt:
    """One `import` / `from ... import` statement that runs on the target."""

    id: int
    line: int
    end_line: int
    column: int
    kind: Literal["import", "from"]
    level: int  # relative import dots
    module: str  # `from <module> import`; "" for `import` and `from . import x`
    names: tuple[tuple[str, str | None], ...]  # (name, asname); ("*", None) for a star import
    owner: str  # the unit that executes it
    top: bool  # module body at import time (not a class body): a placeholder candidate
    optional: bool  # guarded by try/except ImportError or suppress(ImportError)

    def bound(self, alias: int) -> str:
        name, asname = self.names[alias]
        if asname is not None:
            return asname
        return name if self.kind == "from" else name.split(".")[0]


@dataclass(frozen=True)
class DynImport:
    """`importlib.import_module(...)` / `__import__(...)`; module None when not a literal."""

    line: int
    column: int
    module: str | None
    package: str | None  # literal package argument, "<current>" for __package__/__name__
    optional: bool
    code: str  # the call's source, for the finding message


@dataclass(frozen=True)
class Hint:
    module: str
    hint: str
    line: int
    column: int


@dataclass(frozen=True)
class UnitFinding:
    code: str
    message: str
    line: int


@dataclass(frozen=True)
class Unit:
    id: str
    line: int
    refs: tuple[Ref, ...] = ()
    imports: tuple[int, ...] = ()  # statements this unit executes
    dyns: tuple[DynImport, ...] = ()
    hints: tuple[Hint, ...] = ()
    findings: tuple[UnitFinding, ...] = ()


@dataclass(frozen=True)
class Binding:
    """What a module-level name is bound to: a def, a class, an import alias, or data."""

    kind: Literal["def", "class", "imp", "assign"]
    target: str = ""  # unit id (def) or class qualname (class)
    stmt: int = -1
    alias: int = -1


@dataclass(frozen=True)
class FileSummary:
    units: tuple[Unit, ...]
    stmts: tuple[ImportStmt, ...]
    bindings: tuple[tuple[str, tuple[Binding, ...]], ...]
    classes: tuple[tuple[str, tuple[str, ...]], ...]  # class qualname -> method unit ids
    syntax_error: tuple[int, str] | None = None

    def unit_map(self) -> dict[str, Unit]:
        return {u.id: u for u in self.units}

    def binding_map(self) -> dict[str, tuple[Binding, ...]]:
        return dict(self.bindings)

    def class_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self.classes)


# ---------------------------------------------------------------- JSON (for the disk cache)


def summary_to_json(s: FileSummary) -> dict[str, Any]:
    def unit(u: Unit) -> list[Any]:
        return [
            u.id,
            u.line,
            [[r.kind, r.name, r.stmt, r.alias, list(r.attrs)] for r in u.refs],
            list(u.imports),
            [[d.line, d.column, d.module, d.package, d.optional, d.code] for d in u.dyns],
            [[h.module, h.hint, h.line, h.column] for h in u.hints],
            [[f.code, f.message, f.line] for f in u.findings],
        ]

    return {
        "v": SUMMARY_VERSION,
        "units": [unit(u) for u in s.units],
        "stmts": [
            [
                st.id,
                st.line,
                st.end_line,
                st.column,
                st.kind,
                st.level,
                st.module,
                [list(n) for n in st.names],
                st.owner,
                st.top,
                st.optional,
            ]
            for st in s.stmts
        ],
        "bindings": [
            [name, [[b.kind, b.target, b.stmt, b.alias] for b in bs]] for name, bs in s.bindings
        ],
        "classes": [[q, list(ms)] for q, ms in s.classes],
        "syntax_error": list(s.syntax_error) if s.syntax_error else None,
    }


def summary_from_json(d: dict[str, Any]) -> FileSummary:
    """Inverse of summary_to_json; raises (KeyError/TypeError/ValueError) on a bad entry."""
    if d.get("v") != SUMMARY_VERSION:
        raise ValueError("summary version mismatch")
    units = tuple(
        Unit(
            id=str(u[0]),
            line=int(u[1]),
            refs=tuple(Ref(r[0], r[1], r[2], r[3], tuple(r[4])) for r in u[2]),
            imports=tuple(int(i) for i in u[3]),
            dyns=tuple(DynImport(*x) for x in u[4]),
            hints=tuple(Hint(*x) for x in u[5]),
            findings=tuple(UnitFinding(*x) for x in u[6]),
        )
        for u in d["units"]
    )
    stmts = tuple(
        ImportStmt(
            id=x[0],
            line=x[1],
            end_line=x[2],
            column=x[3],
            kind=x[4],
            level=x[5],
            module=x[6],
            names=tuple((n[0], n[1]) for n in x[7]),
            owner=x[8],
            top=x[9],
            optional=x[10],
        )
        for x in d["stmts"]
    )
    bindings = tuple(
        (str(name), tuple(Binding(b[0], b[1], b[2], b[3]) for b in bs))
        for name, bs in d["bindings"]
    )
    classes = tuple((str(q), tuple(ms)) for q, ms in d["classes"])
    err = d.get("syntax_error")
    return FileSummary(units, stmts, bindings, classes, (int(err[0]), str(err[1])) if err else None)


@dataclass(frozen=True)
class GuardEnv:
    """What a guard may depend on: the target's version and marker values."""

    version: tuple[int, int, int]
    sys_platform: str
    os_name: str
    platform_system: str

    @classmethod
    def from_markers(cls, version: tuple[int, int, int], markers: Mapping[str, str]) -> GuardEnv:
        return cls(
            version=version,
            sys_platform=markers.get("sys_platform", "linux"),
            os_name=markers.get("os_name", "posix"),
            platform_system=markers.get("platform_system", "Linux"),
        )

    def key(self) -> str:
        return "{}.{}.{}|{}|{}|{}".format(
            *self.version, self.sys_platform, self.os_name, self.platform_system
        )
