"""Parse what the user typed (`job.py:func`, `pkg.mod:Class.method`, ...) into a TargetSpec.

Every way a target can be wrong is caught here, before any analysis, and turned into one
`TargetError` (exit code 3) with a hint: the file is missing or not Python, it does not parse
(reported as file:line), it cannot be decoded (PEP 263 cookies and BOMs are honoured), or the
function is not there (close names are suggested). Module targets are located on the *target*
environment's path with `modpath.find_module`, never imported.
"""

from __future__ import annotations

import ast
import codecs
import difflib
import io
import os
import re
import stat
import tokenize
from dataclasses import dataclass
from typing import Literal

from lfm_pack.analyze.modpath import find_module
from lfm_pack.analyze.parse_guard import MAX_SOURCE_BYTES, gate, run_deep, too_large
from lfm_pack.errors import TargetError
from lfm_pack.models import EnvInfo, TargetSpec

# CPython refuses these too ("source code cannot contain null bytes"); say what they are.
# UTF-32 first: its little-endian BOM starts with UTF-16's.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def decode_source(data: bytes, path: str) -> str:
    """Decode Python source like the interpreter: BOM, PEP 263 cookie, else UTF-8."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            raise TargetError(
                f"{path}: source is {name}-encoded; Python reads source as UTF-8 or an "
                "ASCII-compatible encoding named by a PEP 263 coding line",
                hint=f"convert it, e.g. iconv -f {name} -t UTF-8",
            )
    if b"\x00" in data:
        raise TargetError(
            f"{path}: source contains a null byte",
            hint="the file is binary or corrupt; point the target at a Python source file",
        )
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        raise TargetError(
            f"{path}: cannot decode the source ({exc}): not UTF-8 and no valid coding line",
            hint="save the file as UTF-8, or fix its '# -*- coding: ... -*-' line (PEP 263)",
        ) from None
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise TargetError(
            f"{path}: source is not valid {encoding}: {exc}",
            hint="save the file as UTF-8 or declare its encoding with a PEP 263 coding line",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_source(path: str) -> str:
    """Read and decode one source file, raising TargetError for every user-visible failure."""
    return read_source_bytes(path)[1]


def read_source_bytes(path: str) -> tuple[bytes, str]:
    """(raw bytes, decoded text) of one source file; TargetError for every failure.

    Files over parse_guard.MAX_SOURCE_BYTES are refused before they are read (a 20 MB
    generated file would take minutes in libcst), and so is anything but a regular file:
    opening a FIFO blocks forever and /dev/zero never ends.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise TargetError(
                f"{path}: not a regular file",
                hint="point the target at a Python source file (not a pipe or a device)",
            )
        reason = too_large(info.st_size)
        if reason is not None:
            raise TargetError(
                f"{path}: {reason}",
                hint="target a smaller module; very large generated files cannot be "
                "analysed per function",
            )
        with open(path, "rb") as fh:
            data = fh.read(MAX_SOURCE_BYTES + 1)  # the file may grow after the stat
        if len(data) > MAX_SOURCE_BYTES:
            raise TargetError(f"{path}: {too_large(len(data))}", hint="target a smaller module")
    except OSError as exc:
        raise TargetError(
            f"{path}: cannot read: {exc.strerror}", hint="check the file's permissions"
        ) from None
    return data, decode_source(data, path)


@dataclass(frozen=True)
class _Defs:
    """Qualified names of the functions and classes a module defines (for lookup + hints)."""

    functions: frozenset[str]
    classes: frozenset[str]


def _collect_defs(tree: ast.Module) -> _Defs:
    functions: set[str] = set()
    classes: set[str] = set()

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for stmt in body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.add(prefix + stmt.name)
            elif isinstance(stmt, ast.ClassDef):
                classes.add(prefix + stmt.name)
                walk(stmt.body, prefix + stmt.name + ".")
            elif isinstance(stmt, ast.If | ast.Try | ast.With | ast.AsyncWith):
                # Conditionally defined functions (`if sys.platform ...: def f`) still count.
                for field in ("body", "orelse", "finalbody"):
                    walk(getattr(stmt, field, []) or [], prefix)
                for handler in getattr(stmt, "handlers", []) or []:
                    walk(handler.body, prefix)

    walk(tree.body, "")
    return _Defs(frozenset(functions), frozenset(classes))


def _parse(text: str, path: str, version: tuple[int, int, int]) -> ast.Module | None:
    """The module's AST, or None when only libcst (a newer grammar than the host's) parses it.

    parse_guard.gate decides whether libcst may even be tried: handing it source CPython
    rejected for its nesting would crash the process (see parse_guard's docstring).
    """
    error, tree = gate(text, version)
    if error is None and tree is not None:
        return tree
    if error is None:  # the host's grammar may be older than the target's
        import libcst

        try:
            run_deep(lambda: libcst.parse_module(text))
        except Exception as exc:
            msg = getattr(exc, "message", None) or str(exc).splitlines()[0]
            line = getattr(exc, "raw_line", 0)
            error = (line, msg)
        else:
            return None
    line, msg = error
    what = "" if tree is not None else "syntax error: "  # a tree: parsed, but over a limit
    raise TargetError(
        f"{path}:{line}: {what}{msg}",
        hint="fix the syntax error (lfm-pack only reads the file, it never runs it)",
    )


def _check_qualname(tree: ast.Module, path: str, qualname: str) -> None:
    defs = _collect_defs(tree)
    if qualname in defs.functions or qualname in defs.classes:
        return
    known = sorted(defs.functions | defs.classes)
    close = difflib.get_close_matches(qualname, known, n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + ", ".join(repr(c) for c in close) + "?"
    elif known:
        hint = "defined here: " + ", ".join(known[:8]) + (" ..." if len(known) > 8 else "")
    else:
        hint = "the file defines no functions or classes; target the whole script instead"
    raise TargetError(f"{path}: no function or class {qualname!r}", hint=hint)


def _split(raw: str) -> tuple[str, str | None]:
    """`a/b.py:f` -> ('a/b.py', 'f'); a Windows drive letter or a bare path has no qualname."""
    head, sep, tail = raw.rpartition(":")
    if not sep or "/" in tail or "\\" in tail or (len(head) == 1 and head.isalpha()):
        return raw, None
    return head, tail


def parse_target(raw: str, env: EnvInfo, cwd: str) -> TargetSpec:
    """Turn one target string into a TargetSpec with an absolute, readable, parsable file."""
    raw = raw.strip()
    if not raw:
        raise TargetError("empty target", hint="give e.g. job.py:main or pkg.module:func")
    location, qualname = _split(raw)
    if qualname is not None and not _DOTTED.match(qualname):
        raise TargetError(
            f"{raw}: {qualname!r} is not a function or Class.method name",
            hint="write the target as file.py:func, file.py:Class.method or pkg.module:func",
        )
    candidate = os.path.join(cwd, os.path.expanduser(location))
    looks_like_file = (
        location.endswith(".py")
        or os.sep in location
        or "/" in location
        or os.path.isfile(candidate)
    )
    if looks_like_file or not _DOTTED.match(location):
        path = os.path.abspath(os.path.join(cwd, os.path.expanduser(location)))
        if not os.path.exists(path):
            raise TargetError(
                f"{location}: no such file",
                hint=f"paths are relative to {cwd}; give the file as path/to/file.py:func",
            )
        if os.path.isdir(path):
            init = os.path.join(path, "__init__.py")
            if not os.path.isfile(init):
                raise TargetError(
                    f"{location}: is a directory, not a Python file",
                    hint="point at a .py file, e.g. path/to/file.py:func",
                )
            path = init
        if not path.endswith(".py"):
            raise TargetError(
                f"{location}: not a .py source file",
                hint="lfm-pack analyses Python source; point at the .py file that defines it",
            )
        kind: Literal["file", "module"] = "file"
        module = None
    else:
        search = [cwd, *env.sys_path]
        found = find_module(location, search, env.ext_suffixes)
        if found is None:
            raise TargetError(
                f"{location}: no such module in the target environment ({env.executable})",
                hint="check the name, or give the file path instead (path/to/module.py:func)",
            )
        if found.path is None or not found.path.endswith(".py"):
            what = "a namespace package" if found.path is None else os.path.basename(found.path)
            raise TargetError(
                f"{location}: resolves to {what}, which has no Python source to analyse",
                hint="target a module with .py source",
            )
        path = found.path
        kind = "module"
        module = location
    text = read_source(path)
    tree = _parse(text, path, env.version)
    if qualname is not None and tree is not None:
        _check_qualname(tree, path, qualname)
    return TargetSpec(raw=raw, kind=kind, path=path, module=module, qualname=qualname)
