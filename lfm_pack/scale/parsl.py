"""Run packed functions from Parsl: a python_app whose body is one launcher run.

`python_app(packed, cores=1, memory=2000, running_time_min=5)` returns a callable that behaves
like a Parsl app: calling it returns an AppFuture whose result is an `lfm_pack.Result`, AppFutures
among the positional/keyword arguments are waited for by Parsl as usual, and a failed call raises
`RemoteError` / `LimitExceeded` / `LaunchError` from `future.result()`.

The resource keys are Parsl's own `parsl_resource_specification` names and units (cores, memory
and disk in MB, running_time_min), i.e. exactly what `lfm-pack suggest` prints for Parsl. They
are enforced by the lfm monitor on the node (`--cores`, `--memory`, `--disk`, `--wall-time`)
whatever the executor; with `executor_resources=True` they are also handed to the executor, for
Work Queue / TaskVine, which size their workers from them (HighThroughputExecutor refuses them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lfm_pack.api import Packed, Result, Serializer
from lfm_pack.errors import LfmError

if TYPE_CHECKING:
    from parsl.dataflow.dflow import DataFlowKernel
    from parsl.dataflow.futures import AppFuture

#: Parsl resource-specification keys (units as Parsl uses them).
RESOURCE_KEYS = ("cores", "memory", "disk", "running_time_min", "priority")

_PARSL_RESERVED = ("parsl_resource_specification", "walltime", "stdout", "stderr")


def launcher_limits(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Parsl's resource specification -> the launcher's limits (memory/disk in MB -> bytes)."""
    unknown = sorted(set(spec) - set(RESOURCE_KEYS))
    if unknown:
        raise LfmError(
            f"unknown Parsl resource key(s): {', '.join(unknown)}",
            hint=f"use {', '.join(RESOURCE_KEYS)} (memory and disk in MB)",
        )
    out: dict[str, Any] = {}
    if spec.get("cores") is not None:
        out["cores"] = max(1, math.ceil(float(spec["cores"])))
    if spec.get("memory") is not None:
        out["memory"] = int(float(spec["memory"]) * 1024 * 1024)
    if spec.get("disk") is not None:
        out["disk"] = int(float(spec["disk"]) * 1024 * 1024)
    if spec.get("running_time_min") is not None:
        out["wall_time"] = float(spec["running_time_min"]) * 60.0
    return out


def run_packed(packed: Packed, options: Mapping[str, Any], *args: Any, **kwargs: Any) -> Result:
    """The app body Parsl ships to a worker (by reference): one launcher run."""
    for name in _PARSL_RESERVED:
        kwargs.pop(name, None)  # Parsl leaves its own keywords in the call's kwargs
    return packed.call(args, kwargs, **dict(options))


def python_app(
    packed: Packed,
    *,
    executors: Sequence[str] | str = "all",
    data_flow_kernel: DataFlowKernel | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    serializer: Serializer = "json",
    check: bool = True,
    executor_resources: bool = False,
    **resource_spec: Any,
) -> Callable[..., AppFuture]:
    """A Parsl app calling `packed` through its launcher (see the module docstring).

    `cache_dir` defaults to the launcher's node-local cache; `report_dir` (visible to the
    workers) keeps one report per call for `lfm-pack show` / `lfm-pack suggest`.
    """
    from parsl.app.python import PythonApp

    limits = launcher_limits(resource_spec)
    report = None
    if report_dir is not None:
        report = os.fspath(report_dir).rstrip(os.sep) + os.sep  # one unique report per call
    options = {
        **limits,
        "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
        "report": report,
        "serializer": serializer,
        "check": check,
    }
    app = PythonApp(  # type: ignore[no-untyped-call]
        run_packed,
        data_flow_kernel=data_flow_kernel,
        executors=list(executors) if not isinstance(executors, str) else executors,
    )
    spec = dict(resource_spec)

    def call(*args: Any, **kwargs: Any) -> AppFuture:
        if executor_resources:
            kwargs["parsl_resource_specification"] = spec
        future: AppFuture = app(packed, options, *args, **kwargs)
        return future

    call.__name__ = call.__qualname__ = f"{packed.name}_app"
    call.__doc__ = f"Parsl app running the packed function {packed.name!r} ({packed.launcher})."
    return call


__all__ = ["RESOURCE_KEYS", "launcher_limits", "python_app", "run_packed"]
