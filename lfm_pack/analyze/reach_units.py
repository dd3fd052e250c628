"""Summarise one source file as a graph of *units* (what runs when) with libcst scope metadata.

A unit is a piece of code that runs as a whole: `<module>` (everything executed at import time:
module body, class bodies, decorators, default values, runtime-evaluated annotations),
`<main>` (the `if __name__ == "__main__":` block, run only for a whole-script target) and one
unit per module-level function or method (`func`, `Class.method`; nested defs, lambdas and
comprehensions belong to the enclosing function). Each unit lists what it *reads*: module-level
names, names bound by import statements (with the attribute chain, so `np.linalg.norm` and
`helpers.load` keep their precision), `self.x` / `cls.x`, literal dynamic imports and backend
hints. Import statements are declarations: the walker (reach.py) decides which are needed.

The summary depends only on the source text and the guard environment (version, platform), so
it is cached on disk (reach_cache.py) and a warm run never re-parses a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import libcst as cst
from libcst.metadata import (
    Access,
    Assignment,
    BuiltinAssignment,
    GlobalScope,
    ImportAssignment,
    MetadataWrapper,
    PositionProvider,
    ScopeProvider,
)

from lfm_pack.analyze.parse_guard import gate, run_deep
from lfm_pack.analyze.reach_guards import (
    catches_import_error,
    dotted,
    evaluate,
    is_main_check,
    suppresses_import_error,
)
from lfm_pack.analyze.reach_hints import hints_for_call
from lfm_pack.analyze.reach_metadata import (
    METADATA_FUNCS,
    METADATA_KEYWORDS,
    METADATA_LOOKUP,
    distribution_name,
    metadata_lookup_message,
)
from lfm_pack.analyze.reach_summary import (
    MAIN_UNIT,
    MODULE_UNIT,
    Binding,
    DynImport,
    FileSummary,
    GuardEnv,
    Hint,
    ImportStmt,
    Ref,
    Unit,
    UnitFinding,
)

# ---------------------------------------------------------------- building


@dataclass
class _UnitBuilder:
    id: str
    line: int
    refs: dict[Ref, None] = field(default_factory=dict)
    imports: list[int] = field(default_factory=list)
    dyns: list[DynImport] = field(default_factory=list)
    hints: list[Hint] = field(default_factory=list)
    findings: list[UnitFinding] = field(default_factory=list)

    def freeze(self) -> Unit:
        return Unit(
            self.id,
            self.line,
            tuple(self.refs),
            tuple(self.imports),
            tuple(self.dyns),
            tuple(self.hints),
            tuple(self.findings),
        )


_DYNAMIC_FUNCS = frozenset(
    {"importlib.import_module", "builtins.__import__", "importlib.__import__"}
)

#: Well-known library wrappers that import a module named by their first argument.
#: value = True when the wrapper tolerates absence (returns None / skips), so the import is
#: optional; sympy's `import_module("matplotlib")` is how sympy.plotting finds its backend.
_WRAPPER_FUNCS: dict[str, bool] = {
    "sympy.external.import_module": True,
    "sympy.external.importtools.import_module": True,
    "pytest.importorskip": True,
    "lazy_loader.load": False,
}


def _string(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString | cst.ConcatenatedString):
        v = node.evaluated_value
        return v if isinstance(v, str) else None
    return None


def _import_names(node: cst.Import | cst.ImportFrom) -> tuple[tuple[str, str | None], ...]:
    if isinstance(node.names, cst.ImportStar):
        return (("*", None),)
    out: list[tuple[str, str | None]] = []
    for alias in node.names:
        name = dotted(alias.name) if isinstance(alias.name, cst.Attribute | cst.Name) else None
        asname = None
        if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
            asname = alias.asname.name.value
        out.append((name or "", asname))
    return tuple(out)


class _Summarizer(cst.CSTVisitor):
    """One pass over the tree with a context stack: current unit, class path, guards."""

    def __init__(self, wrapper: MetadataWrapper, genv: GuardEnv, module: cst.Module) -> None:
        super().__init__()
        self.module = module
        self.genv = genv
        self.scopes = wrapper.resolve(ScopeProvider)
        self.positions = wrapper.resolve(PositionProvider)
        self.accesses: dict[cst.CSTNode, Access] = {}
        for scope in {s for s in self.scopes.values() if s is not None}:
            for access in scope.accesses:
                self.accesses[access.node] = access
        self.units: dict[str, _UnitBuilder] = {MODULE_UNIT: _UnitBuilder(MODULE_UNIT, 1)}
        self.unit_stack: list[str] = [MODULE_UNIT]
        self.class_stack: list[str] = []  # qualname parts of import-time classes
        self.in_function = 0
        self.optional = 0
        self.stmts: list[ImportStmt] = []
        self.stmt_ids: dict[cst.CSTNode, int] = {}
        self.def_units: dict[cst.CSTNode, str] = {}
        self.class_quals: dict[cst.CSTNode, str] = {}
        self.classes: dict[str, list[str]] = {}
        self.pending: list[tuple[_UnitBuilder, Access, tuple[str, ...]]] = []
        self.future_annotations = False
        self.eval_annotations = genv.version < (3, 14)

    # -- helpers
    @property
    def unit(self) -> _UnitBuilder:
        return self.units[self.unit_stack[-1]]

    def line(self, node: cst.CSTNode) -> tuple[int, int]:
        pos = self.positions[node]
        return pos.start.line, pos.start.column

    def code(self, node: cst.CSTNode) -> str:
        text = self.module.code_for_node(node).strip()
        return text if len(text) <= 80 else text[:77] + "..."

    def push_unit(self, uid: str, node: cst.CSTNode) -> None:
        if uid not in self.units:
            self.units[uid] = _UnitBuilder(uid, self.line(node)[0])
        self.unit_stack.append(uid)

    # -- reads
    def _record(self, node: cst.CSTNode, attrs: tuple[str, ...]) -> None:
        """Remember a read; resolved after the pass, when every import statement is known
        (a function body may read a name whose import comes later in the file)."""
        access = self.accesses.get(node)
        if access is not None:
            self.pending.append((self.unit, access, attrs))

    def _resolve(self, unit: _UnitBuilder, access: Access, attrs: tuple[str, ...]) -> None:
        name_node = access.node
        referents = access.referents
        if not referents:
            # Unbound here: a builtin-free global lookup at run time (star imports supply it).
            if isinstance(name_node, cst.Name):
                unit.refs[Ref("g", name_node.value, attrs=attrs)] = None
            return
        for ref in referents:
            if isinstance(ref, BuiltinAssignment):
                if ref.name == "globals":
                    unit.refs[Ref("m")] = None
                elif ref.name in ("eval", "exec"):
                    line = self.line(access.node)[0]
                    unit.findings.append(
                        UnitFinding(
                            "dynamic-code",
                            f"{ref.name}() runs code lfm-pack cannot see; its imports are not "
                            "analysed",
                            line,
                        )
                    )
                continue
            if isinstance(ref, ImportAssignment):
                sid = self.stmt_ids.get(ref.node)
                if sid is None:
                    continue  # statement excluded by a guard (TYPE_CHECKING, version)
                stmt = self.stmts[sid]
                alias, rel = self._alias_for(stmt, ref.name)
                if alias >= 0:
                    unit.refs[Ref("i", stmt=sid, alias=alias, attrs=rel + attrs)] = None
            elif isinstance(ref.scope, GlobalScope):
                unit.refs[Ref("g", ref.name, attrs=attrs)] = None

    @staticmethod
    def _alias_for(stmt: ImportStmt, bound: str) -> tuple[int, tuple[str, ...]]:
        """Which alias binds `bound` (e.g. "os.path" for `import os.path`) + the extra attrs."""
        for i, (name, asname) in enumerate(stmt.names):
            if asname is not None:
                if asname == bound:
                    return i, ()
                continue
            if stmt.kind == "from":
                if name == bound:
                    return i, ()
                continue
            if name == bound or name.startswith(bound + "."):
                return i, tuple(bound.split(".")[1:])
        for i, (name, _) in enumerate(stmt.names):  # `import a.b, a.c`: both bind `a`
            if name.split(".")[0] == bound.split(".")[0]:
                return i, tuple(bound.split(".")[1:])
        return -1, ()

    def visit_Name(self, node: cst.Name) -> bool:
        self._record(node, ())
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        chain: list[cst.BaseExpression] = []
        cur: cst.BaseExpression = node
        while isinstance(cur, cst.Attribute):
            chain.append(cur)
            cur = cur.value
        if not isinstance(cur, cst.Name):
            # e.g. f().x: visit the non-name base normally, attribute names are not reads.
            cur.visit(self)
            return False
        chain.append(cur)
        chain.reverse()  # base Name first, then a.b, a.b.c, ...
        attrs = [c.attr.value for c in chain[1:] if isinstance(c, cst.Attribute)]
        # The access node is the longest prefix libcst knows (`os.path` for `import os.path`).
        for i in range(len(chain) - 1, -1, -1):
            if chain[i] in self.accesses:
                self._record(chain[i], tuple(attrs[i:]))
                break
        if cur.value in ("self", "cls") and self.class_stack and attrs:
            self.unit.refs[Ref("s", ".".join(self.class_stack), attrs=(attrs[0],))] = None
        return False

    # -- annotations
    def visit_Annotation(self, node: cst.Annotation) -> bool:
        # Parameter/return annotations run with the `def`; local variable annotations are
        # skipped in visit_AnnAssign. Postponed (PEP 563/649) annotations never run.
        return not (self.future_annotations or not self.eval_annotations)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> bool:
        node.target.visit(self)
        if not self.in_function:
            node.annotation.visit(self)
        if node.value is not None:
            node.value.visit(self)
        return False

    # -- imports
    def _add_stmt(self, node: cst.Import | cst.ImportFrom) -> None:
        start = self.positions[node].start
        end = self.positions[node].end
        if isinstance(node, cst.ImportFrom):
            module = dotted(node.module) if node.module is not None else ""
            level = len(node.relative)
            if module == "__future__":
                if any(n == "annotations" for n, _ in _import_names(node)):
                    self.future_annotations = True
                return
            kind: Literal["import", "from"] = "from"
        else:
            module, level, kind = "", 0, "import"
        owner = self.unit_stack[-1]
        stmt = ImportStmt(
            id=len(self.stmts),
            line=start.line,
            end_line=end.line,
            column=start.column,
            kind=kind,
            level=level,
            module=module or "",
            names=_import_names(node),
            owner=owner,
            top=owner == MODULE_UNIT and not self.class_stack,
            optional=self.optional > 0,
        )
        self.stmts.append(stmt)
        self.stmt_ids[node] = stmt.id
        if not stmt.top:
            self.unit.imports.append(stmt.id)
        if stmt.names == (("*", None),):
            self.unit.findings.append(
                UnitFinding(
                    "star-import",
                    f"'from {'.' * level}{module} import *' binds names lfm-pack cannot see; "
                    "the whole module is treated as needed",
                    start.line,
                )
            )

    def visit_Import(self, node: cst.Import) -> bool:
        self._add_stmt(node)
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        self._add_stmt(node)
        return False

    # -- definitions
    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        for dec in node.decorators:
            dec.visit(self)
        node.params.visit(self)
        if node.returns is not None:
            node.returns.visit(self)
        new_unit = not self.in_function and self.unit_stack[-1] in (MODULE_UNIT, MAIN_UNIT)
        if new_unit:
            uid = ".".join([*self.class_stack, node.name.value])
            self.def_units[node] = uid
            for i in range(1, len(self.class_stack) + 1):
                self.classes.setdefault(".".join(self.class_stack[:i]), []).append(uid)
            self.push_unit(uid, node)
        self.in_function += 1
        node.body.visit(self)
        self.in_function -= 1
        if new_unit:
            self.unit_stack.pop()
        return False

    def visit_Param(self, node: cst.Param) -> bool:
        if node.annotation is not None:
            node.annotation.visit(self)
        if node.default is not None:
            node.default.visit(self)
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        node.params.visit(self)
        self.in_function += 1
        node.body.visit(self)
        self.in_function -= 1
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        for dec in node.decorators:
            dec.visit(self)
        for arg in (*node.bases, *node.keywords):
            arg.visit(self)
        import_time = not self.in_function and self.unit_stack[-1] in (MODULE_UNIT, MAIN_UNIT)
        if import_time:
            self.class_stack.append(node.name.value)
            qual = ".".join(self.class_stack)
            self.class_quals[node] = qual
            self.classes.setdefault(qual, [])
        node.body.visit(self)
        if import_time:
            self.class_stack.pop()
        return False

    # -- guards
    def visit_If(self, node: cst.If) -> bool:
        node.test.visit(self)
        at_module = self.unit_stack[-1] == MODULE_UNIT and not self.class_stack
        if at_module and is_main_check(node.test):
            self.push_unit(MAIN_UNIT, node)
            node.body.visit(self)
            self.unit_stack.pop()
            if node.orelse is not None:
                node.orelse.visit(self)
            return False
        value = evaluate(node.test, self.genv)
        if value is not False:
            node.body.visit(self)
        if value is not True and node.orelse is not None:
            if isinstance(node.orelse, cst.If):
                self.visit_If(node.orelse)
            else:
                node.orelse.body.visit(self)
        return False

    def visit_IfExp(self, node: cst.IfExp) -> bool:
        node.test.visit(self)
        value = evaluate(node.test, self.genv)
        if value is not False:
            node.body.visit(self)
        if value is not True:
            node.orelse.visit(self)
        return False

    def _visit_try(self, node: cst.Try | cst.TryStar) -> bool:
        guarded = catches_import_error(node.handlers)
        self.optional += guarded
        node.body.visit(self)
        self.optional -= guarded
        for handler in node.handlers:
            handler.visit(self)
        for extra in (node.orelse, node.finalbody):
            if extra is not None:
                extra.visit(self)
        return False

    def visit_Try(self, node: cst.Try) -> bool:
        return self._visit_try(node)

    def visit_TryStar(self, node: cst.TryStar) -> bool:
        return self._visit_try(node)

    def visit_With(self, node: cst.With) -> bool:
        for item in node.items:
            item.visit(self)
        guarded = any(suppresses_import_error(item) for item in node.items)
        self.optional += guarded
        node.body.visit(self)
        self.optional -= guarded
        return False

    # -- calls: dynamic imports and backend hints
    def visit_Call(self, node: cst.Call) -> bool:
        scope = self.scopes.get(node)
        quals: frozenset[str] = frozenset()
        if scope is not None:
            try:
                quals = frozenset(q.name for q in scope.get_qualified_names_for(node.func))
            except Exception:  # libcst raises on some exotic nodes; no name then
                quals = frozenset()
        line, col = self.line(node)
        if quals & _DYNAMIC_FUNCS:
            self._dynamic(node, line, col, "importlib.import_module" in quals)
        else:
            wrapper = [_WRAPPER_FUNCS[q] for q in quals if q in _WRAPPER_FUNCS]
            if wrapper:
                self._dynamic(node, line, col, False, force_optional=wrapper[0])
        lookup = quals & METADATA_FUNCS
        if lookup:
            self._metadata_lookup(node, min(lookup), line)
        first = _string(node.args[0].value) if node.args else None
        method = node.func.attr.value if isinstance(node.func, cst.Attribute) else None
        for h in hints_for_call(quals, method, first):
            self.unit.hints.append(Hint(h.module, h.hint, line, col))
        return True

    def _metadata_lookup(self, node: cst.Call, func: str, line: int) -> None:
        """`importlib.metadata.version("pkg")` & co.: a finding naming the distribution."""
        arg: cst.BaseExpression | None = None
        for a in node.args:
            if a.keyword is not None and a.keyword.value in METADATA_KEYWORDS:
                arg = a.value
        positional = [a for a in node.args if a.keyword is None and not a.star]
        if arg is None and positional:
            arg = positional[0].value
        name = distribution_name(_string(arg) if arg is not None else None)
        self.unit.findings.append(
            UnitFinding(METADATA_LOOKUP, metadata_lookup_message(func, name, self.code(node)), line)
        )

    def _dynamic(
        self, node: cst.Call, line: int, col: int, import_module: bool, force_optional: bool = False
    ) -> None:
        name_arg: cst.BaseExpression | None = None
        package_arg: cst.BaseExpression | None = None
        positional = [a for a in node.args if a.keyword is None and not a.star]
        for a in node.args:
            if a.keyword is not None and a.keyword.value == "name":
                name_arg = a.value
            if a.keyword is not None and a.keyword.value == "package":
                package_arg = a.value
        if name_arg is None and positional:
            name_arg = positional[0].value
        if package_arg is None and len(positional) > 1 and import_module:
            package_arg = positional[1].value
        module = _string(name_arg) if name_arg is not None else None
        package: str | None = None
        if package_arg is not None:
            package = _string(package_arg)
            if package is None and dotted(package_arg) in ("__package__", "__name__"):
                package = "<current>"
        elif module is not None and module.startswith("."):
            package = None
        self.unit.dyns.append(
            DynImport(
                line, col, module, package, force_optional or self.optional > 0, self.code(node)
            )
        )

    # -- finishing
    def bindings(self) -> tuple[tuple[str, tuple[Binding, ...]], ...]:
        global_scope = self.scopes.get(self.module)
        out: dict[str, list[Binding]] = {}
        if not isinstance(global_scope, GlobalScope):
            return ()
        for asg in global_scope.assignments:
            if isinstance(asg, BuiltinAssignment):
                continue
            b: Binding | None
            if isinstance(asg, ImportAssignment):
                sid = self.stmt_ids.get(asg.node)
                if sid is None:
                    continue
                alias, rel = self._alias_for(self.stmts[sid], asg.name)
                if alias < 0 or rel:
                    continue  # `import os.path` also records "os.path"; "os" is the binding
                b = Binding("imp", stmt=sid, alias=alias)
            elif isinstance(asg, Assignment) and asg.node in self.def_units:
                b = Binding("def", target=self.def_units[asg.node])
            elif isinstance(asg, Assignment) and asg.node in self.class_quals:
                b = Binding("class", target=self.class_quals[asg.node])
            else:
                b = Binding("assign")
            bucket = out.setdefault(asg.name, [])
            if b not in bucket:
                bucket.append(b)
        return tuple((k, tuple(v)) for k, v in sorted(out.items()))

    def summary(self) -> FileSummary:
        for unit, access, attrs in self.pending:
            self._resolve(unit, access, attrs)
        return FileSummary(
            units=tuple(u.freeze() for u in self.units.values()),
            stmts=tuple(self.stmts),
            bindings=self.bindings(),
            classes=tuple((q, tuple(ms)) for q, ms in self.classes.items()),
        )


def summarize(source: str, genv: GuardEnv) -> FileSummary:
    """Parse once and summarise; a file that does not parse yields an empty summary + error.

    CPython's parser vets the source first and libcst runs on a big stack (parse_guard.py):
    hostile nesting becomes a syntax error here instead of a segfault or RecursionError.
    """
    error, _ = gate(source, genv.version)
    if error is not None:
        return FileSummary((Unit(MODULE_UNIT, 1),), (), (), (), error)
    try:
        return run_deep(lambda: _summarize(source, genv))
    except (RecursionError, MemoryError):
        return FileSummary(
            (Unit(MODULE_UNIT, 1),), (), (), (), (1, "too deeply nested for lfm-pack to analyse")
        )


def _summarize(source: str, genv: GuardEnv) -> FileSummary:
    try:
        module = cst.parse_module(source)
    except (RecursionError, MemoryError):
        raise
    except Exception as exc:  # ParserSyntaxError, or a tokenizer error on odd input
        line, msg = _syntax_error(source, exc)
        return FileSummary((Unit(MODULE_UNIT, 1),), (), (), (), (line, msg))
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    visitor = _Summarizer(wrapper, genv, module)
    # `from __future__ import annotations` must be known before the first annotation.
    visitor.future_annotations = _has_future_annotations(module.body)
    module.visit(visitor)
    return visitor.summary()


def _has_future_annotations(body: Sequence[cst.BaseStatement]) -> bool:
    for stmt in body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if (
                isinstance(small, cst.ImportFrom)
                and small.module is not None
                and dotted(small.module) == "__future__"
                and not isinstance(small.names, cst.ImportStar)
                and any(
                    isinstance(a.name, cst.Name) and a.name.value == "annotations"
                    for a in small.names
                )
            ):
                return True
    return False


def _syntax_error(source: str, exc: Exception) -> tuple[int, str]:
    """CPython's own line and message when it agrees the file is broken (more precise)."""
    import ast
    import warnings

    try:
        with warnings.catch_warnings():  # the user's code's warnings are not our output
            warnings.simplefilter("ignore")
            ast.parse(source)
    except SyntaxError as err:
        return err.lineno or 1, err.msg
    except (ValueError, RecursionError, MemoryError) as err:
        return 1, str(err) or type(err).__name__
    if isinstance(exc, cst.ParserSyntaxError):
        return exc.raw_line, exc.message
    return 1, str(exc)
