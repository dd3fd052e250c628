"""Run-time reads of installed package metadata (hard case 18), as "metadata-lookup" findings.

`importlib.metadata.version("pkg")` (and `distribution`, `metadata`, `files`, `requires`, the
`importlib_metadata` backport, `pkg_resources.get_distribution` / `require`) import no module
of "pkg" but fail with PackageNotFoundError unless pkg's dist-info is installed. An import
analysis alone would pack the code without it, so every such call in reached code becomes a
finding naming the distribution; mapping/closure can turn the name into a package.

Kept free of libcst (reach.py imports it on the warm path); reach_units.py detects the calls.
`models.Finding` is shared and frozen (code + message only), so the name travels in a fixed
message format that `lookup_distribution` parses back.
"""

from __future__ import annotations

import re

METADATA_LOOKUP = "metadata-lookup"

METADATA_FUNCS = frozenset(
    f"{mod}.{fn}"
    for mod in ("importlib.metadata", "importlib_metadata")
    for fn in ("version", "distribution", "metadata", "files", "requires")
) | {"pkg_resources.get_distribution", "pkg_resources.require"}

# Keyword names of the distribution argument (importlib.metadata, pkg_resources).
METADATA_KEYWORDS = ("distribution_name", "dist", "requirements")

_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:[\[<>=!~;@ ]|$)")
_LOOKUP_NAME = re.compile(r"distribution '([^']+)': its dist-info must ship")


def distribution_name(literal: str | None) -> str | None:
    """`"pkg"` or a requirement string (`"pkg>=1.0"`, pkg_resources style) -> "pkg"."""
    if literal is None:
        return None
    m = _REQ_NAME.match(literal)
    return m.group(1) if m else None


def metadata_lookup_message(func: str, name: str | None, code: str) -> str:
    """The finding's message; `lookup_distribution` parses the name back out of it."""
    if name is None:
        return (
            f"{code} reads installed package metadata with a non-literal name: lfm-pack "
            "cannot tell which distribution's dist-info to ship; add it with --include"
        )
    return (
        f"{func}() reads the installed metadata of distribution {name!r}: its dist-info "
        "must ship with the pack"
    )


def lookup_distribution(message: str) -> str | None:
    """The distribution a "metadata-lookup" finding names (None for a non-literal lookup)."""
    m = _LOOKUP_NAME.search(message)
    return m.group(1) if m else None
