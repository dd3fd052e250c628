"""The pack's name: it becomes file names (`<name>.tar.gz`, `<name>-run`), a shell variable in
the launcher, report file names and scheduler job names, so it is kept to a portable charset.

A name the user typed is checked, never silently rewritten: `--name ../../evil` or
`--name "fïb ü"` would otherwise become `evil` / `f-b` and the user would look for files that
do not exist. Names derived from the target are made safe quietly (nobody typed them).
"""

from __future__ import annotations

import re
from pathlib import Path

from lfm_pack.errors import UsageError
from lfm_pack.models import Analysis

_ALLOWED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def safe_name(raw: str) -> str:
    """`raw` with every run of other characters turned into '-' (for derived names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.")


def checked_name(raw: str) -> str:
    """A user-given name, as given, or UsageError saying what is allowed and what would do."""
    if _ALLOWED.match(raw) and len(raw) <= 128:
        return raw
    safe = safe_name(raw)[:128]
    hint = f"e.g. --name {safe}" if safe else "use letters, digits, '.', '_' and '-'"
    raise UsageError(
        f"--name {raw!r}: a pack name may hold only letters, digits, '.', '_' and '-' "
        "(it names files, a shell variable and scheduler jobs), starting with a letter or digit",
        hint=hint,
    )


def default_name(analysis: Analysis) -> str:
    """The first target's function name, else its script stem / last module component."""
    t = analysis.targets[0]
    if t.qualname:
        raw = t.qualname.replace(".", "-")
    elif t.module:
        raw = t.module.rsplit(".", 1)[-1]
    else:
        raw = Path(t.path).stem
    return safe_name(raw) or "pack"
