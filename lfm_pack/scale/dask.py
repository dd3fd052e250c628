"""Run packed functions on a Dask `distributed` cluster: one launcher subprocess per task.

Dask only schedules; the work runs in the pack's own interpreter, started by the launcher on
the worker's node, so the worker's Python needs neither numpy nor the user's code - only
`distributed` and lfm_pack (whose API imports nothing but the standard library). The launcher
unpacks the archive once per node cache (flock + marker, see docs/launcher.md), so a node that
runs 1,000 tasks extracts the environment once. Each future's result is an `lfm_pack.Result`
(value + parsed monitor report); a failed call raises `RemoteError` / `LimitExceeded` /
`LaunchError` from `future.result()`, with the remote traceback.

The archive and launcher must be readable where the workers run: a shared filesystem, or
`packed.stage("/shared/dir")` first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lfm_pack.api import Packed, Result, Serializer

if TYPE_CHECKING:
    from distributed import Client, Future


def run_task(
    packed: Packed,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    options: Mapping[str, Any],
) -> Result:
    """The function Dask runs on a worker: one launcher run (pickled by reference)."""
    return packed.call(args, kwargs, **dict(options))


def _options(
    memory: int | str | None,
    wall_time: float | None,
    cores: int | None,
    disk: int | str | None,
    cache_dir: str | os.PathLike[str] | None,
    report: str | os.PathLike[str] | None,
    serializer: Serializer,
    check: bool,
) -> dict[str, Any]:
    report_s = None if report is None else os.fspath(report)
    if report_s is not None and not report_s.endswith(os.sep):
        # Many tasks share this option: a directory gets one unique report per task.
        report_s += os.sep
    return {
        "memory": memory,
        "wall_time": wall_time,
        "cores": cores,
        "disk": disk,
        "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
        "report": report_s,
        "serializer": serializer,
        "check": check,
    }


def submit(
    client: Client,
    packed: Packed,
    *args: Any,
    memory: int | str | None = None,
    wall_time: float | None = None,
    cores: int | None = None,
    disk: int | str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    serializer: Serializer = "json",
    check: bool = True,
    resources: Mapping[str, float] | None = None,
    retries: int | None = None,
    key: str | None = None,
    **kwargs: Any,
) -> Future[Result]:
    """Submit one call `packed(*args, **kwargs)`; the future's result is an `lfm_pack.Result`.

    `memory`/`wall_time`/`cores`/`disk` are enforced by the monitor on the node; `resources`
    are Dask worker resources (e.g. {"MEMORY": 2e9}) for Dask's own placement. Without
    `cache_dir` the launcher's node-local default ($LFM_CACHE_DIR or $TMPDIR/lfm-cache-$USER)
    is used. `report_dir` (a directory visible to the workers) keeps one report per task.
    """
    opts = _options(memory, wall_time, cores, disk, cache_dir, report_dir, serializer, check)
    extra: dict[str, Any] = {"pure": False}
    if resources is not None:
        extra["resources"] = dict(resources)
    if retries is not None:
        extra["retries"] = retries
    if key is not None:
        extra["key"] = key
    return client.submit(run_task, packed, tuple(args), dict(kwargs), opts, **extra)


def map(
    client: Client,
    packed: Packed,
    *iterables: Iterable[Any],
    memory: int | str | None = None,
    wall_time: float | None = None,
    cores: int | None = None,
    disk: int | str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    serializer: Serializer = "json",
    check: bool = True,
    resources: Mapping[str, float] | None = None,
    retries: int | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> list[Future[Result]]:
    """Like the builtin `map` over positional args: `map(client, p, [1, 2], [7, 8])` calls
    p(1, 7) and p(2, 8), one future each; `kwargs` are passed to every call."""
    return [
        submit(
            client,
            packed,
            *call_args,
            memory=memory,
            wall_time=wall_time,
            cores=cores,
            disk=disk,
            cache_dir=cache_dir,
            report_dir=report_dir,
            serializer=serializer,
            check=check,
            resources=resources,
            retries=retries,
            **dict(kwargs or {}),
        )
        for call_args in zip(*iterables, strict=True)
    ]


__all__ = ["map", "run_task", "submit"]
