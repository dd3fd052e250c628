"""lfm_pack.scale.dask against a real distributed.LocalCluster with two worker processes.

Both workers start tasks at once on one "node" (this machine) sharing one cache: the env must be
extracted exactly once however many tasks run (the launcher's flock + marker), and values,
reports and remote tracebacks must come back through Dask futures.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api import shared_pack_cache

import lfm_pack
from lfm_pack.api import Packed, Result

distributed = pytest.importorskip("distributed")

from lfm_pack.scale import dask as lfm_dask  # noqa: E402

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
def client() -> Iterator[distributed.Client]:
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def node_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("node-cache")


def _expected(samples: int, seed: int) -> dict[str, object]:
    job = importlib.import_module("job")
    value: dict[str, object] = job.simulate(samples, seed)
    return value


def test_many_tasks_one_extraction_per_node_cache(
    client: distributed.Client, packed: Packed, tmp_path: Path
) -> None:
    cache = tmp_path / "node-cache"
    reports = tmp_path / "reports"
    seeds = list(range(8))
    with distributed.get_task_stream(client) as stream:
        futures = lfm_dask.map(
            client, packed, [50_000] * 8, seeds, cache_dir=cache, report_dir=reports
        )
        results = client.gather(futures)
    assert all(isinstance(r, Result) for r in results)
    assert [r.value for r in results] == [_expected(50_000, s) for s in seeds]
    # exactly one environment in the cache, extracted by exactly one of the 8 runs
    envs = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert [p.name for p in envs] == [packed.env_key]
    assert sum(r.cache_hit is False for r in results) == 1
    assert sum(r.cache_hit is True for r in results) == 7
    files = sorted(reports.glob("simulate-*.json"))
    assert len(files) == 8
    on_disk = [json.loads(f.read_text()) for f in files]
    assert sum(rep["cache"]["hit"] is False for rep in on_disk) == 1
    assert {rep["status"] for rep in on_disk} == {"ok"}
    # both worker processes ran tasks concurrently against the one cache
    ran_on = {t["worker"] for t in stream.data if t["key"] in {f.key for f in futures}}
    assert len(ran_on) == 2


def test_submit_kwargs_and_remote_error_through_the_future(
    client: distributed.Client, packed: Packed, node_cache: Path
) -> None:
    ok = lfm_dask.submit(client, packed, samples=2000, seed=11, cache_dir=node_cache)
    bad = lfm_dask.submit(client, packed, "lots", cache_dir=node_cache)
    soft = lfm_dask.submit(client, packed, "lots", cache_dir=node_cache, check=False)
    assert ok.result().value == _expected(2000, 11)
    with pytest.raises(lfm_pack.RemoteError) as info:
        bad.result()
    assert info.value.exit_code == 81 and info.value.remote_type == "TypeError"
    assert isinstance(info.value, TypeError)  # the function's own type, through the future
    assert "estimate_pi" in info.value.remote_traceback
    res = soft.result()
    assert res.exit_code == 81 and res.status == "error"


def test_limits_are_enforced_on_the_worker(
    client: distributed.Client, packed: Packed, node_cache: Path
) -> None:
    fut = lfm_dask.submit(client, packed, 40_000_000, memory="150M", cache_dir=node_cache)
    with pytest.raises(lfm_pack.LimitExceeded) as info:
        fut.result()
    assert info.value.exit_code == 82
