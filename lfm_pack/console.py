"""Human output goes to stderr (rich); stdout carries only the product."""

from __future__ import annotations

from rich.console import Console

#: Everything meant for people: tables, progress bars, warnings, errors.
err = Console(stderr=True, highlight=False)
