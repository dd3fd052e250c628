"""Rewrite the unreached module-level imports of shipped local files into placeholders.

The analysis lists, per local file, the import statements whose bound names no reached code
reads (`Placeholder`). Each is replaced *in place*, keeping its line span, by a tuple assignment
binding the same names to `lfm_runtime.placeholder.missing(module, name)` objects: the pack can
then omit the module, tracebacks keep their line numbers, and a call path the analysis missed
fails loudly with ModuleNotFoundError on first use instead of silently.

The statement is located with libcst (exact start/end columns), so `x = 1; import requests` or a
parenthesized multi-line `from a import (b, c)` are rewritten without touching their neighbours.
The replacement spans the same lines by putting the newlines inside its parentheses.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Sequence

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from lfm_pack.errors import PackError
from lfm_pack.models import Placeholder

_MISSING = '__import__("lfm_runtime.placeholder", fromlist=("missing",)).missing'


class _Finder(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self) -> None:
        self.ranges: list[CodeRange] = []

    def _add(self, node: cst.CSTNode) -> None:
        self.ranges.append(self.get_metadata(PositionProvider, node))

    def visit_Import(self, node: cst.Import) -> None:
        self._add(node)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self._add(node)


def replacement(p: Placeholder, n_lines: int) -> str:
    """`(a, b,) = (missing("m", "a"), missing("m", "b"),<newlines>)` spanning n_lines lines."""
    names = tuple(dict.fromkeys(p.names))
    if not names:
        return "(" + "\n" * (n_lines - 1) + ")"
    lhs = "(" + ", ".join(names) + ",)"
    rhs = ", ".join(f"{_MISSING}({p.module!r}, {n!r})" for n in names)
    return f"{lhs} = ({rhs}," + "\n" * (n_lines - 1) + ")"


_LINE_END = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")


def decode_python(raw: bytes, path: str) -> tuple[str, str]:
    """Decode a source file the way the interpreter does; return (text, encoding to write back).

    PEP 263 cookies and a UTF-8 BOM are honoured (`utf-8-sig` keeps the BOM on the way out), so
    the rewritten file is byte-for-byte the original outside the replaced import statements.
    """
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        return raw.decode(encoding), encoding
    except (SyntaxError, LookupError, UnicodeDecodeError) as exc:
        raise PackError(
            f"cannot decode local file {path}: {exc}",
            hint="save it as UTF-8 or give it a valid PEP 263 coding line",
        ) from exc


def rewrite_source(source: str, placeholders: Sequence[Placeholder], path: str = "<src>") -> str:
    """Return `source` with each placeholder's import statement replaced (same line span)."""
    if not placeholders:
        return source
    try:
        wrapper = MetadataWrapper(cst.parse_module(source))
    except cst.ParserSyntaxError as exc:
        raise PackError(f"cannot rewrite placeholders in {path}: {exc}") from exc
    finder = _Finder()
    wrapper.visit(finder)
    # Only \n, \r\n and \r end a line for Python (and libcst); str.splitlines() would also
    # split on form feeds, \x1c-\x1e, \x85 and U+2028/9 and shift every later offset.
    lines = [ln for ln in _LINE_END.split(source) if ln]
    # offsets of each line start, to turn (line, column) into string indexes
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    edits: list[tuple[int, int, str]] = []
    for p in placeholders:
        match = [r for r in finder.ranges if r.start.line == p.line]
        if not match:
            raise PackError(
                f"{path}:{p.line}: no import statement where the analysis placed a placeholder",
                hint="the file changed since the analysis; re-run lfm-pack analyze",
            )
        r = match[0]
        a = starts[r.start.line - 1] + r.start.column
        b = starts[r.end.line - 1] + r.end.column
        edits.append((a, b, replacement(p, r.end.line - r.start.line + 1)))
    out = source
    for a, b, text in sorted(set(edits), reverse=True):
        out = out[:a] + text + out[b:]
    try:
        compile(out, path, "exec", dont_inherit=True)
    except SyntaxError as exc:  # pragma: no cover - would be a bug in the rewrite
        raise PackError(f"placeholder rewrite of {path} produced invalid Python: {exc}") from exc
    if out.count("\n") != source.count("\n"):  # pragma: no cover - same reason
        raise PackError(f"placeholder rewrite of {path} changed its line count")
    return out
