"""The cluster simulator behind benchmarks/allocation.py, on cases small enough to do by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lfm_pack.scale.allocation import (
    Cluster,
    FixedGuess,
    Learned,
    Oracle,
    Request,
    SimTask,
    SimulationError,
    WholeNode,
    escalate,
    simulate,
)
from lfm_pack.scale.sizes import GIB, MIB

REPO = Path(__file__).resolve().parent.parent
NODE = Cluster(nodes=1, cores_per_node=4, memory_per_node=8 * GIB)


def test_whole_node_runs_one_task_at_a_time_oracle_packs_them() -> None:
    tasks = [SimTask(1 * GIB, 1, 10.0)] * 4
    whole = simulate(tasks, NODE, WholeNode(NODE))
    assert whole.makespan_s == 40.0 and whole.retries == 0
    assert whole.memory_waste == pytest.approx(1 - (4 * 1 * 10) / (4 * 8 * 10))  # 0.875
    assert whole.cores_waste == pytest.approx(1 - 40 / 160)
    oracle = simulate(tasks, NODE, Oracle())
    assert oracle.makespan_s == 10.0 and oracle.memory_waste == 0.0
    assert oracle.throughput_per_hour == pytest.approx(4 / 10 * 3600)


def test_fixed_guess_retries_the_task_it_underestimated_on_a_whole_node() -> None:
    tasks = [SimTask(3 * GIB, 1, 10.0)] + [SimTask(1 * GIB, 1, 10.0)] * 3
    r = simulate(tasks, NODE, FixedGuess(Request(2 * GIB, 1), NODE))
    # t=0: all four start at 2G (8G, 4 cores); t=10 the 3G task fails -> whole node 10..20
    assert r.makespan_s == 20.0
    assert r.retries == 1 and r.attempts == 5
    # allocated: 4 x 2G x 10 s + 8G x 10 s; used: 3G x 10 + 3 x 1G x 10
    assert r.memory_allocated_byte_s == pytest.approx((4 * 2 + 8) * GIB * 10)
    assert r.memory_used_byte_s == pytest.approx(6 * GIB * 10)


def test_learned_policy_warms_up_on_whole_nodes_then_uses_its_first_allocation() -> None:
    node = Cluster(nodes=1, cores_per_node=2, memory_per_node=4 * GIB)
    small, large = SimTask(100 * MIB, 1, 10.0), SimTask(1000 * MIB, 1, 10.0)
    tasks = [small, small, large, small]
    strategy = Learned("max-throughput", node, learn_k=2)
    r = simulate(tasks, node, strategy)
    # 0..10 A whole node; 10..20 B whole node; after 2 completions: first = max = 250M, 1 core
    # 20..30 C (fails at 250M) and D; 30..40 C again on the whole node (max 250M is no larger)
    assert r.makespan_s == 40.0
    assert r.retries == 1 and r.attempts == 5
    state = strategy._state["default"]
    assert state.first == Request(250 * MIB, 1)
    assert state.maximum == Request(1250 * MIB, 1)  # C's 1000M raised the max afterwards


def test_retry_goes_to_the_learned_max_when_it_covers_the_task() -> None:
    node = Cluster(nodes=1, cores_per_node=2, memory_per_node=8 * GIB)
    small, large = SimTask(100 * MIB, 1, 10.0), SimTask(1000 * MIB, 1, 10.0)
    # learned beforehand (prior reports): 9 small + 1 large -> first 250M, max 1250M
    strategy = Learned("max-throughput", node, learn_k=10, prior=[small] * 9 + [large])
    r = simulate([large, small], node, strategy)
    # 0..10 large (fails at 250M) + small; 10..20 large at 1250M on the freed cores
    assert r.makespan_s == 20.0 and r.retries == 1
    assert r.memory_allocated_byte_s == pytest.approx((250 + 250 + 1250) * MIB * 10)


def test_a_retry_raises_only_the_exhausted_resource() -> None:
    over_mem, over_cores = SimTask(3 * GIB, 1, 1.0), SimTask(1 * GIB, 2, 1.0)
    guess = Request(2 * GIB, 1)
    # nothing learned: the exhausted resource goes to the node's whole amount, the other stays
    assert escalate(over_mem, guess, None, NODE) == Request(8 * GIB, 1)
    assert escalate(over_cores, guess, None, NODE) == Request(2 * GIB, 4)
    # a larger category max is tried first (for every resource), as cctools' MAX label does
    assert escalate(over_mem, guess, Request(4 * GIB, 2), NODE) == Request(4 * GIB, 2)
    # a max no larger than what was exhausted cannot help: the node's amount
    huge = SimTask(5 * GIB, 1, 1.0)
    assert escalate(huge, Request(4 * GIB, 1), Request(3 * GIB, 1), NODE) == Request(8 * GIB, 1)


def test_guess_warmup_packs_tasks_while_the_policy_learns() -> None:
    node = Cluster(nodes=1, cores_per_node=2, memory_per_node=4 * GIB)
    small, large = SimTask(100 * MIB, 1, 10.0), SimTask(1000 * MIB, 1, 10.0)
    tasks = [small, small, large]
    guessed = simulate(
        tasks,
        node,
        Learned("max-throughput", node, learn_k=2, warmup="guess", guess=Request(500 * MIB, 1)),
    )
    # 0..10 both small at the 500M guess; then first = max = 250M: the large one fails 10..20
    # and max 250M is no larger, so it reruns with the node's memory (1 core) 20..30
    assert guessed.makespan_s == 30.0 and guessed.retries == 1
    # without a guess (cctools' default) the warm-up runs one task per node: 10 s later
    whole = simulate(tasks, node, Learned("max-throughput", node, learn_k=2))
    assert whole.makespan_s == 40.0 and whole.retries == 1


def test_a_blocked_retry_reserves_the_node_instead_of_starving() -> None:
    node = Cluster(nodes=1, cores_per_node=2, memory_per_node=4 * GIB)
    x = SimTask(3 * GIB, 1, 10.0)
    tasks = [x, SimTask(1 * GIB, 1, 15.0)] + [SimTask(1 * GIB, 1, 10.0)] * 3
    r = simulate(tasks, node, FixedGuess(Request(1 * GIB, 1), node))
    # t=10 x fails and needs the whole node; the node is reserved (nothing new starts) until
    # the 15 s task ends; x runs 15..25; the three others 25..35 (two) and 35..45 (one)
    assert r.makespan_s == 45.0 and r.retries == 1


def test_impossible_task_is_refused() -> None:
    with pytest.raises(SimulationError, match="more than a whole node"):
        simulate([SimTask(9 * GIB, 1, 1.0)], NODE, Oracle())


def test_simulation_is_deterministic() -> None:
    tasks = [SimTask((i % 7 + 1) * 300 * MIB, 1 + i % 2, 5.0 + i % 11) for i in range(300)]
    cluster = Cluster(4, 8, 16 * GIB)
    a = simulate(tasks, cluster, Learned("min-waste", cluster, learn_k=10))
    b = simulate(tasks, cluster, Learned("min-waste", cluster, learn_k=10))
    assert a == b
    oracle = simulate(tasks, cluster, Oracle())
    assert oracle.makespan_s <= a.makespan_s


@pytest.mark.slow
def test_benchmark_runs_and_reports_every_strategy() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "allocation.py"),
            "--tasks=1000",
            "--workload=bimodal",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    by = {r["strategy"]: r for r in rows}
    for p in ("max", "min-waste", "max-throughput"):
        assert f"{p} (online)" in by and f"{p} (pilot)" in by and f"{p} (online+guess)" in by
    assert by["oracle"]["vs_oracle"] == 1.0 and by["whole-node"]["vs_whole_node"] == 1.0
    # the second target (>= 3x whole-node) holds for both ways of learning
    assert by["max-throughput (online)"]["vs_whole_node"] >= 3.0
    assert by["max-throughput (pilot)"]["vs_whole_node"] >= 3.0
    # no policy beats the oracle
    assert all(r["vs_oracle"] <= 1.0 for r in rows)


def test_ramp_kills_at_the_crossing_end_at_the_end() -> None:
    big = SimTask(4 * GIB, 1, 100.0)
    guess = FixedGuess(Request(1 * GIB, 1), NODE)
    # memory grows linearly to 4G over 100 s: it crosses 1G at 25 s, then a whole node 25..125
    ramp = simulate([big], NODE, guess, kill="ramp")
    assert ramp.makespan_s == pytest.approx(125.0)
    assert ramp.memory_allocated_byte_s == pytest.approx(1 * GIB * 25 + 8 * GIB * 100)
    # the policies' conservative model: the failed attempt holds its allocation for 100 s
    end = simulate([big], NODE, FixedGuess(Request(1 * GIB, 1), NODE), kill="end")
    assert end.makespan_s == pytest.approx(200.0)
