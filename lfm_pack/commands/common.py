"""Options and output helpers shared by several subcommands."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from lfm_pack.jsonio import atomic_open, dumps

F = TypeVar("F", bound=Callable[..., Any])


def env_options(func: F) -> F:
    """--python / --prefix: which environment is the target (default: the active one)."""
    func = click.option(
        "--prefix",
        metavar="DIR",
        help="Target environment root (venv or conda prefix).",
    )(func)
    func = click.option(
        "--python",
        "python",
        metavar="PATH",
        help="Target interpreter (default: $VIRTUAL_ENV, $CONDA_PREFIX, else lfm-pack's own).",
    )(func)
    return func


def json_option(func: F) -> F:
    """--json: machine-readable product on stdout, nothing else there."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")(func)


def emit(text: str, output: str | None) -> None:
    """Write the product to stdout, or atomically to `output`."""
    if output and output != "-":
        with atomic_open(output, "w") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


def emit_json(data: Any, output: str | None = None) -> None:
    emit(dumps(data), output)
