"""lfm_pack.scale.parsl for real: a HighThroughputExecutor (1 block, 2 workers) on a LocalProvider.

The app body is one launcher run on the worker; values, reports, Parsl dependencies (an AppFuture
as an argument), resource limits from a Parsl-style resource spec and remote tracebacks are
checked end to end.
"""

from __future__ import annotations

import importlib
import json
import operator
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api import shared_pack_cache

import lfm_pack
from lfm_pack.api import Packed, Result
from lfm_pack.errors import LfmError

parsl = pytest.importorskip("parsl")

from lfm_pack.scale import parsl as lfm_parsl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "montecarlo"


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Packed:
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    job = importlib.import_module("job")
    cache = shared_pack_cache(tmp_path_factory)
    return lfm_pack.pack(
        job.simulate, tmp_path_factory.mktemp("pack"), verify=False, cache_dir=cache
    )


@pytest.fixture(scope="module")
def dfk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    run_dir = tmp_path_factory.mktemp("parsl")
    # Parsl starts interchange.py / process_worker_pool.py from PATH: the venv's bin must be on it.
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + old_path
    config = Config(
        executors=[
            HighThroughputExecutor(
                label="htex_local",
                address="127.0.0.1",
                max_workers_per_node=2,
                cores_per_worker=1,
                provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
            )
        ],
        run_dir=str(run_dir / "runinfo"),
        strategy="none",
    )
    kernel = parsl.load(config)
    try:
        yield kernel
    finally:
        kernel.cleanup()
        parsl.clear()
        os.environ["PATH"] = old_path


def _expected(samples: int, seed: int) -> dict[str, Any]:
    value: dict[str, Any] = importlib.import_module("job").simulate(samples, seed)
    return value


def test_app_runs_calls_through_the_launcher_once_per_node_cache(
    dfk: Any, packed: Packed, tmp_path: Path
) -> None:
    cache = tmp_path / "node-cache"
    reports = tmp_path / "reports"
    simulate = lfm_parsl.python_app(
        packed, cache_dir=cache, report_dir=reports, cores=1, memory=1000, running_time_min=2
    )
    futures = [simulate(20_000, seed) for seed in range(6)]
    results = [f.result() for f in futures]
    assert all(isinstance(r, Result) for r in results)
    assert [r.value for r in results] == [_expected(20_000, s) for s in range(6)]
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [packed.env_key]
    assert sum(r.cache_hit is False for r in results) == 1
    reps = [json.loads(p.read_text()) for p in sorted(reports.glob("simulate-*.json"))]
    assert len(reps) == 6
    # the resource spec became monitor limits: 1000 MB, 2 min, 1 core
    limits = reps[0]["limits"]
    assert limits["memory_bytes"] == 1000 * 1024 * 1024
    assert limits["wall_time_s"] == 120.0


def test_app_futures_kwargs_and_errors(dfk: Any, packed: Packed, tmp_path: Path) -> None:
    cache = tmp_path / "node-cache"
    simulate = lfm_parsl.python_app(packed, cache_dir=cache)
    first = simulate(samples=3000, seed=1)
    double = parsl.python_app(operator.mul)  # a stdlib app: importable on any worker
    second = simulate(double(3000, 2), seed=2)  # Parsl waits for the AppFuture argument
    assert second.result().value == _expected(6000, 2)
    assert first.result().value == _expected(3000, 1)
    with pytest.raises(lfm_pack.RemoteError) as info:
        simulate("oops").result()
    assert info.value.exit_code == 81 and "estimate_pi" in info.value.remote_traceback
    assert isinstance(info.value, TypeError)  # the function's own type, through the AppFuture
    capped = lfm_parsl.python_app(packed, cache_dir=cache, memory=150)
    with pytest.raises(lfm_pack.LimitExceeded):
        capped(40_000_000).result()


def test_resource_spec_translation() -> None:
    assert lfm_parsl.launcher_limits(
        {"cores": 2, "memory": 512, "disk": 100, "running_time_min": 3}
    ) == {"cores": 2, "memory": 512 * 2**20, "disk": 100 * 2**20, "wall_time": 180.0}
    with pytest.raises(LfmError, match="walltime"):
        lfm_parsl.launcher_limits({"walltime": 3})
