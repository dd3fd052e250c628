"""Evaluate import guards (`if TYPE_CHECKING`, `sys.version_info`, `sys.platform`, `os.name`)
for the *target* interpreter, and recognise `except ImportError` handlers.

A guard decides which branch runs on the target, so only that branch's imports are needed:
`if sys.version_info < (3, 11): import tomli` needs tomli on 3.10 and nothing on 3.11. Anything
we cannot decide statically evaluates to None and both branches are kept (never drop an import
on a guess). Three-valued logic: True, False, None (unknown).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import libcst as cst

from lfm_pack.analyze.reach_summary import GuardEnv

_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})

_CMP: dict[type[cst.BaseCompOp], Callable[[Any, Any], bool]] = {
    cst.Equal: operator.eq,
    cst.NotEqual: operator.ne,
    cst.LessThan: operator.lt,
    cst.LessThanEqual: operator.le,
    cst.GreaterThan: operator.gt,
    cst.GreaterThanEqual: operator.ge,
}


def dotted(node: cst.BaseExpression) -> str | None:
    """`a.b.c` for a pure Name/Attribute chain, else None."""
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def _is(node: cst.BaseExpression, *names: str) -> bool:
    """`node` is `sys.platform` (or a bare `platform` imported from sys, etc.)."""
    d = dotted(node)
    if d is None:
        return False
    return any(d == n or d == n.rsplit(".", 1)[-1] for n in names)


def is_type_checking(node: cst.BaseExpression) -> bool:
    d = dotted(node)
    return d is not None and d.rsplit(".", 1)[-1] == "TYPE_CHECKING"


def is_main_check(node: cst.BaseExpression) -> bool:
    """`__name__ == "__main__"` (either side)."""
    if not isinstance(node, cst.Comparison) or len(node.comparisons) != 1:
        return False
    comp = node.comparisons[0]
    if not isinstance(comp.operator, cst.Equal):
        return False
    sides = (node.left, comp.comparator)
    names = [s for s in sides if isinstance(s, cst.Name) and s.value == "__name__"]
    strs = [s for s in sides if _literal(s) == "__main__"]
    return bool(names) and bool(strs)


def _literal(node: cst.BaseExpression) -> Any:
    """Python value of a literal int/str/tuple, or a sentinel for anything else."""
    if isinstance(node, cst.Integer):
        return int(node.value, 0)
    if isinstance(node, cst.SimpleString | cst.ConcatenatedString):
        value = node.evaluated_value
        return value if isinstance(value, str) else _UNKNOWN
    if isinstance(node, cst.Tuple | cst.List):
        items = []
        for el in node.elements:
            if not isinstance(el, cst.Element):
                return _UNKNOWN
            v = _literal(el.value)
            if v is _UNKNOWN:
                return _UNKNOWN
            items.append(v)
        return tuple(items)
    return _UNKNOWN


_UNKNOWN: Any = object()


def _value(node: cst.BaseExpression, env: GuardEnv) -> Any:
    """The target's value of a guard operand (`sys.version_info[:2]`, `os.name`), or _UNKNOWN."""
    version_info = (*env.version, "final", 0)
    if _is(node, "sys.version_info"):
        return version_info
    if isinstance(node, cst.Attribute) and _is(node.value, "sys.version_info"):
        fields = {"major": 0, "minor": 1, "micro": 2}
        if node.attr.value in fields:
            return env.version[fields[node.attr.value]]
        return _UNKNOWN
    if isinstance(node, cst.Subscript) and _is(node.value, "sys.version_info"):
        if len(node.slice) != 1:
            return _UNKNOWN
        sl = node.slice[0].slice
        if isinstance(sl, cst.Index):
            idx = _literal(sl.value)
            return version_info[idx] if isinstance(idx, int) and -5 <= idx < 5 else _UNKNOWN
        if isinstance(sl, cst.Slice) and sl.step is None:
            lo = 0 if sl.lower is None else _literal(sl.lower)
            hi = 5 if sl.upper is None else _literal(sl.upper)
            if isinstance(lo, int) and isinstance(hi, int):
                return version_info[lo:hi]
        return _UNKNOWN
    if _is(node, "sys.platform"):
        return env.sys_platform
    if _is(node, "os.name") and dotted(node) != "name":
        return env.os_name
    if isinstance(node, cst.Call) and not node.args and dotted(node.func) in ("platform.system",):
        return env.platform_system
    return _literal(node)


def evaluate(node: cst.BaseExpression, env: GuardEnv) -> bool | None:
    """True/False if the condition is decidable for the target, else None."""
    if is_type_checking(node):
        return False
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
        inner = evaluate(node.expression, env)
        return None if inner is None else not inner
    if isinstance(node, cst.BooleanOperation):
        left = evaluate(node.left, env)
        right = evaluate(node.right, env)
        if isinstance(node.operator, cst.And):
            if left is False or right is False:
                return False
            return True if left is True and right is True else None
        if left is True or right is True:
            return True
        return False if left is False and right is False else None
    if isinstance(node, cst.Comparison):
        return _comparison(node, env)
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        method = node.func.attr.value
        if method in ("startswith", "endswith") and len(node.args) == 1:
            subject = _value(node.func.value, env)
            arg = _literal(node.args[0].value)
            if isinstance(subject, str) and isinstance(arg, str | tuple):
                return bool(getattr(subject, method)(arg))
    return None


def _comparison(node: cst.Comparison, env: GuardEnv) -> bool | None:
    left = _value(node.left, env)
    result = True
    for comp in node.comparisons:
        right = _value(comp.comparator, env)
        if left is _UNKNOWN or right is _UNKNOWN:
            return None
        # Only decide on a guard that involves the target (sys./os./platform.), not x == 1.
        op = comp.operator
        try:
            if isinstance(op, cst.In | cst.NotIn):
                ok = left in right
                ok = ok if isinstance(op, cst.In) else not ok
            elif type(op) in _CMP:
                ok = _CMP[type(op)](left, right)
            else:
                return None
        except TypeError:
            return None
        result = result and ok
        left = right
    if not _mentions_target(node):
        return None
    return result


def _mentions_target(node: cst.Comparison) -> bool:
    sides = [node.left, *(c.comparator for c in node.comparisons)]
    for side in sides:
        base = side
        while isinstance(base, cst.Subscript | cst.Attribute) and not _is(
            base, "sys.version_info", "sys.platform", "os.name"
        ):
            base = base.value
        if _is(base, "sys.version_info", "sys.platform") or (
            _is(base, "os.name") and dotted(base) != "name"
        ):
            return True
        if isinstance(base, cst.Call) and dotted(base.func) == "platform.system":
            return True
    return False


def catches_import_error(handlers: Sequence[cst.ExceptHandler | cst.ExceptStarHandler]) -> bool:
    """Does one of these `except` clauses catch ImportError (bare, tuple, superclass)?"""
    for handler in handlers:
        kind = handler.type
        if kind is None:
            return True
        candidates = [el.value for el in kind.elements] if isinstance(kind, cst.Tuple) else [kind]
        for cand in candidates:
            d = dotted(cand)
            if d is not None and d.rsplit(".", 1)[-1] in _IMPORT_ERRORS:
                return True
    return False


def suppresses_import_error(item: cst.WithItem) -> bool:
    """`with contextlib.suppress(ImportError):` makes the body's imports optional."""
    call = item.item
    if not isinstance(call, cst.Call):
        return False
    d = dotted(call.func)
    if d is None or d.rsplit(".", 1)[-1] != "suppress":
        return False
    for arg in call.args:
        name = dotted(arg.value)
        if name is not None and name.rsplit(".", 1)[-1] in _IMPORT_ERRORS:
            return True
    return False
