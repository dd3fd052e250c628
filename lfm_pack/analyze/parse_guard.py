"""Limits that keep parsing hostile or pathological source bounded: no crash, no hang.

Why this exists (found by tests/test_fuzz_analyze.py): libcst's native (Rust) parser recurses
on nesting and *segfaults* the whole process on inputs CPython itself refuses, e.g. 5,000
nested parentheses; `ast.parse` raises RecursionError or MemoryError (not SyntaxError) on
~3,000-deep expressions; libcst's Python-level visitors and metadata providers overflow the
default recursion limit at a few hundred levels; and deep call/subscript chains cost
quadratic time in the scope provider (depth 1,000 ~ 2 s, depth 3,000 ~ 45 s). The rules:

* a source file larger than `MAX_SOURCE_BYTES` is not analysed (target: TargetError; a local
  module: a finding, shipped unanalysed). libcst costs ~0.3 ms per line, so 2 MiB (~50,000
  lines) bounds a cold analysis of one file to tens of seconds; real modules are far smaller;
* CPython's own C parser is the gate: libcst only sees source that `ast.parse` accepts (so its
  nesting is within CPython's limits: 200 brackets, 100 indents, ~3,000 expression levels) and
  whose AST is at most `MAX_NESTING` deep. Only when the *target* interpreter is newer than
  the host may a host SyntaxError be a newer grammar; libcst then gets a chance if a flat token
  scan shows the brackets and indents within CPython's limits;
* libcst runs in a worker thread with a `STACK_BYTES` stack and a recursion limit of
  `RECURSION_LIMIT`, enough for `MAX_NESTING` levels with a wide margin.

Documented for users in docs/analyzer-limits.md; tests/test_fuzz_analyze.py holds them to it.
"""

from __future__ import annotations

import ast
import io
import sys
import threading
import tokenize
import warnings
from collections.abc import Callable
from typing import TypeVar

MAX_SOURCE_BYTES = 2 << 20  # per analysed file
MAX_NESTING = 1000  # AST depth (statements + expressions); normal code is < 40
MAX_BRACKETS = 200  # CPython's tokenizer limit (MAXLEVEL), the same in 3.8 - 3.13
MAX_INDENT = 100  # CPython's tokenizer limit (MAXINDENT)
STACK_BYTES = 512 << 20  # virtual; only touched pages cost memory
RECURSION_LIMIT = 100_000

_NESTING_MESSAGES = (
    "too many nested parentheses",
    "too many levels of indentation",
    "too many statically nested blocks",
    "too deeply nested",
)

T = TypeVar("T")
_deep_lock = threading.Lock()


def too_large(size: int) -> str | None:
    """The reason a file of `size` bytes is not analysed, or None."""
    if size > MAX_SOURCE_BYTES:
        return (
            f"{size / (1 << 20):.1f} MiB is over lfm-pack's {MAX_SOURCE_BYTES >> 20} MiB "
            "limit per analysed source file"
        )
    return None


def _depth(tree: ast.AST, limit: int) -> tuple[int, int]:
    """(max depth, line of the deepest node), iterative; stops early past `limit`."""
    best, line = 0, 1
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, d = stack.pop()
        if d > best:
            best, line = d, getattr(node, "lineno", line)
            if best > limit:
                return best, line
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return best, line


def _flat_nesting_ok(text: str) -> bool:
    """Brackets and indents within CPython's limits, by a flat token scan (no recursion)."""
    depth = 0
    indents = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.OP and tok.string in ("(", "[", "{"):
                depth += 1
                if depth > MAX_BRACKETS:
                    return False
            elif tok.type == tokenize.OP and tok.string in (")", "]", "}"):
                depth -= 1
            elif tok.type == tokenize.INDENT:
                indents += 1
                if indents > MAX_INDENT:
                    return False
            elif tok.type == tokenize.DEDENT:
                indents -= 1
    except (SyntaxError, tokenize.TokenError, IndentationError, ValueError):
        return False
    return True


def gate(
    text: str, target_version: tuple[int, ...] | None = None
) -> tuple[tuple[int, str] | None, ast.Module | None]:
    """(error, tree): error is (line, message) when libcst must not be given `text`.

    `tree` is the host's AST when it parses (None when only a newer grammar might). Never
    raises: every failure of the host parser becomes an error tuple.
    """
    try:
        # User code's own warnings (invalid escapes: SyntaxWarning, shown by default from
        # 3.12) are not lfm-pack's output: they would break the one-line stderr contract.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (RecursionError, MemoryError):
        return (1, "nested too deeply for Python to compile"), None
    except SyntaxError as exc:
        msg = exc.msg or "invalid syntax"
        newer = target_version is not None and tuple(target_version[:2]) > sys.version_info[:2]
        if newer and not any(m in msg for m in _NESTING_MESSAGES) and _flat_nesting_ok(text):
            return None, None  # maybe the target's newer grammar: let libcst decide
        return (exc.lineno or 1, msg), None
    except ValueError as exc:  # null bytes and similar
        return (1, str(exc)), None
    depth, line = _depth(tree, MAX_NESTING)
    if depth > MAX_NESTING:
        return (
            line,
            f"nested more than {MAX_NESTING} levels deep (lfm-pack's analysis limit)",
        ), tree
    return None, tree


def run_deep(fn: Callable[[], T]) -> T:
    """Call `fn` in a thread with a big stack and recursion limit; re-raise what it raises.

    The recursion limit is process-wide, so calls are serialised and the old limit restored.
    """
    values: list[T] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            values.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)

    with _deep_lock:
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old_limit, RECURSION_LIMIT))
        try:
            worker = threading.Thread(target=work, name="lfm-pack-parse", daemon=True)
            old_stack = threading.stack_size(STACK_BYTES)  # read when the thread starts
            try:
                worker.start()
            finally:
                threading.stack_size(old_stack)
            worker.join()
        finally:
            sys.setrecursionlimit(old_limit)
    if errors:
        raise errors[0]
    return values[0]
