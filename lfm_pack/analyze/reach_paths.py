"""Paths a local file computes from its own location: `sys.path` edits and data files.

Two everyday idioms are invisible to import analysis:

* `sys.path.insert(0, "../lib")` / `sys.path.append(os.path.join(os.path.dirname(__file__),
  "lib"))` makes a directory importable. When the path is literal (constants, `__file__`,
  `os.path` / `pathlib` operations on them), the directory becomes a local root of the
  analysis, so its modules are followed and shipped like the target's neighbours. A literal
  relative path is taken relative to the file (what the author means; Python itself would use
  the working directory, which is tried second). A path that cannot be evaluated is reported
  with the option that replaces it: `--source-root DIR`.
* `Path(__file__).parent / "data.csv"` or `open(os.path.join(os.path.dirname(__file__),
  "x.json"))` reads a file that only travels with `--extra-file`: reported, with the path when
  the file exists.

The evaluator is deliberately small: string constants, `__file__`, names assigned once from
such values, `os.path.{join,dirname,abspath,realpath,normpath,expanduser}`, `Path(...)`,
`.parent`, `.parents[n]`, `.resolve()`, `.absolute()`, `/`, `.joinpath()`, `.with_name()`,
`str()`, `os.fspath()` and `+` of strings. Uses `ast` (stdlib), never imports the file.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from dataclasses import dataclass

from lfm_pack.models import Finding, Location


@dataclass(frozen=True)
class _Val:
    """A statically known path; `derived` = computed from `__file__`; `joined` = names a file
    or directory below one of the file's ancestors (not just the file or a parent of it)."""

    path: str
    derived: bool
    joined: bool = False


@dataclass(frozen=True)
class PathEdit:
    """One `sys.path` edit: the directory (None when it cannot be evaluated) and where."""

    directory: str | None
    line: int
    code: str


@dataclass(frozen=True)
class DataRef:
    """A file the module locates relative to itself."""

    path: str
    line: int
    code: str
    function: str | None


@dataclass(frozen=True)
class FilePaths:
    edits: tuple[PathEdit, ...]
    data: tuple[DataRef, ...]


_NONE = FilePaths((), ())

_OS_PATH_FUNCS = frozenset({"join", "dirname", "abspath", "realpath", "normpath", "expanduser"})
_SYS_PATH_METHODS = frozenset({"insert", "append", "extend"})


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.insert(0, node.id)
        return ".".join(parts)
    return None


class _Eval:
    """Evaluate path expressions of one file (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.file = os.path.abspath(path)
        self.names: dict[str, _Val] = {}

    def __call__(self, node: ast.expr) -> _Val | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return _Val(node.value, False)
        if isinstance(node, ast.Name):
            if node.id == "__file__":
                return _Val(self.file, True)
            return self.names.get(node.id)
        if isinstance(node, ast.JoinedStr):
            return None
        if isinstance(node, ast.BinOp):
            left, right = self(node.left), self(node.right)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Div):
                return _Val(os.path.join(left.path, right.path), left.derived, True)
            if isinstance(node.op, ast.Add) and not right.derived:
                return _Val(left.path + right.path, left.derived, left.joined or bool(right.path))
            return None
        if isinstance(node, ast.Attribute):
            if node.attr == "parent":
                base = self(node.value)
                return _Val(os.path.dirname(base.path), base.derived) if base else None
            return None
        if isinstance(node, ast.Subscript):
            # Path(__file__).parents[1]
            if (
                isinstance(node.value, ast.Attribute)
                and node.value.attr == "parents"
                and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, int)
            ):
                base = self(node.value.value)
                if base is None:
                    return None
                p = base.path
                for _ in range(node.slice.value + 1):
                    p = os.path.dirname(p)
                return _Val(p, base.derived)
            return None
        if isinstance(node, ast.Call):
            return self._call(node)
        return None

    def _call(self, node: ast.Call) -> _Val | None:
        func = _dotted(node.func)
        args = [self(a) for a in node.args]
        if any(a is None for a in args):
            return None
        vals = [a for a in args if a is not None]
        short = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if func is not None and (func.startswith("os.path.") or func.startswith("path.")):
            name = func.rsplit(".", 1)[-1]
            if name in _OS_PATH_FUNCS and vals:
                derived = vals[0].derived
                if name == "join":
                    joined = os.path.join(*(v.path for v in vals))
                    return _Val(joined, derived, len(vals) > 1 or vals[0].joined)
                if name == "dirname":
                    return _Val(os.path.dirname(vals[0].path), derived)
                if name == "expanduser":
                    return _Val(os.path.expanduser(vals[0].path), derived, vals[0].joined)
                return _Val(vals[0].path, derived, vals[0].joined)  # abspath & co: same place
            return None
        if func in ("Path", "pathlib.Path", "PurePath", "pathlib.PurePath", "str", "os.fspath"):
            if len(vals) == 1:
                return vals[0]
            if len(vals) > 1 and func != "str":
                joined = os.path.join(*(v.path for v in vals))
                return _Val(joined, vals[0].derived, True)
            return None
        if isinstance(node.func, ast.Attribute):
            base = self(node.func.value)
            if base is None:
                return None
            if short in ("resolve", "absolute", "expanduser") and not vals:
                return base
            if short == "joinpath" and vals:
                return _Val(os.path.join(base.path, *(v.path for v in vals)), base.derived, True)
            if short == "with_name" and len(vals) == 1:
                return _Val(
                    os.path.join(os.path.dirname(base.path), vals[0].path), base.derived, True
                )
        return None


def _assignments(tree: ast.Module, ev: _Eval) -> None:
    """Names bound (anywhere, in source order) to an evaluable path: `HERE = Path(__file__)...`."""
    nodes = sorted(
        (n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))),
        key=lambda n: (n.lineno, n.col_offset),
    )
    for n in nodes:
        targets = n.targets if isinstance(n, ast.Assign) else [n.target]
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or n.value is None:
            continue
        val = ev(n.value)
        if val is not None:
            ev.names[targets[0].id] = val
        else:
            ev.names.pop(targets[0].id, None)


def _is_sys_path(node: ast.expr) -> bool:
    return _dotted(node) == "sys.path"


def _functions(tree: ast.Module) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []

    def walk(body: Sequence[ast.stmt], prefix: str) -> None:
        for st in body:
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{st.name}"
                if not isinstance(st, ast.ClassDef):
                    out.append((st.lineno, st.end_lineno or st.lineno, name))
                walk(st.body, f"{name}.")

    walk(tree.body, "")
    return out


def scan_file(path: str, cwd: str | None = None) -> FilePaths:
    """The `sys.path` edits and self-relative data files of one local file (never raises)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return _NONE
    if b"__file__" not in data and b"sys.path" not in data:
        return _NONE  # the common case costs one substring search
    try:
        tree = ast.parse(data, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _NONE
    text = data.decode("utf-8", "replace")
    ev = _Eval(path)
    _assignments(tree, ev)
    here = os.path.dirname(os.path.abspath(path))
    edits: list[PathEdit] = []
    data_refs: list[DataRef] = []
    inside_edits: set[int] = set()

    def edit(line: int, node: ast.expr, code: str) -> None:
        inside_edits.update(id(n) for n in ast.walk(node))
        if isinstance(node, (ast.List, ast.Tuple)):
            for elt in node.elts:
                edit(line, elt, code)
            return
        val = ev(node)
        directory = None
        if val is not None:
            directory = _place(val.path, here, cwd)
        edits.append(PathEdit(directory, line, code))

    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in _SYS_PATH_METHODS
            and _is_sys_path(n.func.value)
            and n.args
        ):
            edit(n.lineno, n.args[-1], ast.get_source_segment(text, n) or "sys.path edit")
        elif isinstance(n, ast.AugAssign) and _is_sys_path(n.target):
            edit(n.lineno, n.value, "sys.path += ...")
        elif (
            isinstance(n, ast.Assign)
            and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Subscript)
            and _is_sys_path(n.targets[0].value)
        ):
            edit(n.lineno, n.value, "sys.path[...] = ...")
    funcs = _functions(tree)
    seen: set[tuple[str, int]] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            return  # a use of a named path: reported where the path is built
        if isinstance(node, ast.expr) and id(node) not in inside_edits:
            val = ev(node)
            if val is not None and val.derived and val.joined:
                p = os.path.normpath(val.path)
                if not p.endswith(".py") and (p, node.lineno) not in seen:
                    seen.add((p, node.lineno))
                    fn = next(
                        (name for a, b, name in reversed(funcs) if a <= node.lineno <= b), None
                    )
                    code = ast.get_source_segment(text, node) or ""
                    data_refs.append(DataRef(p, node.lineno, code, fn))
                return  # the outermost path expression is the one reported
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    dirs = {e.directory for e in edits}
    return FilePaths(tuple(edits), tuple(d for d in data_refs if d.path not in dirs))


def _place(path: str, here: str, cwd: str | None) -> str | None:
    """An existing directory for a sys.path entry: relative to the file, then to `cwd`."""
    if os.path.isabs(path):
        return os.path.normpath(path)
    first = os.path.normpath(os.path.join(here, path))
    if os.path.isdir(first) or cwd is None:
        return first
    second = os.path.normpath(os.path.join(cwd, path))
    return second if os.path.isdir(second) else first


def path_findings(path: str, found: FilePaths, roots: Sequence[str]) -> list[Finding]:
    """Findings for one file's sys.path edits and data files (`roots`: the local roots)."""
    out: list[Finding] = []
    for e in found.edits:
        loc = Location(path, e.line)
        if e.directory is None:
            out.append(
                Finding(
                    "sys-path-dynamic",
                    f"{e.code} adds a directory lfm-pack cannot evaluate; modules imported "
                    "from it are not followed: name it with --source-root DIR",
                    loc,
                )
            )
        elif os.path.isdir(e.directory):
            out.append(
                Finding(
                    "sys-path-edit",
                    f"{e.code} is followed: {e.directory} is a local root (its modules are "
                    "analysed and shipped like the target's)",
                    loc,
                    severity="info",
                )
            )
        else:
            out.append(
                Finding(
                    "sys-path-missing",
                    f"{e.code} adds {e.directory}, which does not exist here; if it is "
                    "created later, name the real directory with --source-root DIR",
                    loc,
                )
            )
    for d in found.data:
        who = f"{d.function}()" if d.function else "the module"
        inside = any(d.path == r or d.path.startswith(r.rstrip("/") + "/") for r in roots)
        if os.path.exists(d.path):
            how = f"--extra-file {d.path}"
            if not inside:
                top = os.path.commonpath([d.path, *roots[:1]]) if roots else os.path.dirname(d.path)
                how = f"--source-root {top} --extra-file {d.path}"
            msg = (
                f"{who} reads {d.path} next to the module ({d.code}); it is not shipped "
                f"unless you add it: {how}"
            )
        else:
            msg = (
                f"{who} reads {d.path} relative to the module ({d.code}), which does not "
                "exist here; if the function needs it, create it and ship it with "
                "--extra-file PATH"
            )
        out.append(Finding("data-file", msg, Location(path, d.line)))
    return out


def absolute_module(path: str, module: str, roots: Sequence[str]) -> str:
    """An import's module as an absolute dotted name (`.x` in `<root>/pkg/m.py` -> `pkg.x`).

    Relative names are resolved from the file's position under the deepest local root that
    holds it; a name that cannot be resolved is returned unchanged.
    """
    if not module.startswith("."):
        return module
    level = len(module) - len(module.lstrip("."))
    rest = module.lstrip(".")
    holders = [r for r in roots if path.startswith(r.rstrip("/") + "/")]
    if not holders:
        return module
    root = max(holders, key=len)
    pkg = os.path.relpath(os.path.dirname(path), root).replace(os.sep, ".")
    parts = [] if pkg == "." else pkg.split(".")
    if level - 1 > len(parts):
        return module
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, rest] if rest else base) or module
