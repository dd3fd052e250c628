"""Discrete-event simulation of a cluster running tasks under an allocation strategy.

Why a simulator: the claim that per-function first allocations (Tovar et al.) come close to an
oracle and beat whole-node allocation several-fold must be measurable on this 2-core machine for
thousands of tasks. The model is the one the policies assume: a task holds its allocation for
its whole run; a task whose peak memory or cores exceed its allocation is killed (at the end of
its run, the waste counted in the policies' E(a), or when its memory crosses the limit: see
`attempt_duration`), frees its allocation at once and is requeued at the front with a larger
allocation (the category's max, else the exhausted resource at a node's whole amount: `escalate`). Nodes are filled first-fit, pending tasks
are scanned in order and any task that fits starts (backfilling), as in Work Queue.

Pure computation, deterministic for a given input: no clocks, no randomness, no I/O.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from lfm_pack.scale.policies import Policy, build_histogram, first_allocation, max_seen
from lfm_pack.scale.sizes import MIB

#: after a request that does not fit anywhere, look at most this many pending tasks further
BACKFILL_WINDOW = 512


@dataclass(frozen=True)
class SimTask:
    """What a task really needs (peaks) and how long it runs when given enough."""

    memory_bytes: int
    cores: int
    runtime_s: float
    category: str = "default"


@dataclass(frozen=True)
class Cluster:
    """N identical nodes."""

    nodes: int
    cores_per_node: int
    memory_per_node: int

    @property
    def whole_node(self) -> Request:
        return Request(self.memory_per_node, self.cores_per_node)


@dataclass(frozen=True)
class Request:
    """An allocation: memory in bytes and whole cores."""

    memory_bytes: int
    cores: int

    def covers(self, task: SimTask) -> bool:
        return self.memory_bytes >= task.memory_bytes and self.cores >= task.cores


class Strategy(Protocol):
    """Decides each attempt's allocation; may learn from completed tasks."""

    name: str

    def request(self, task: SimTask, attempt: int, previous: Request | None) -> Request: ...

    def observe(self, task: SimTask) -> None: ...


@dataclass
class WholeNode:
    """Every task gets a whole node: never retried, one task per node."""

    cluster: Cluster
    name: str = "whole-node"

    def request(self, task: SimTask, attempt: int, previous: Request | None) -> Request:
        return self.cluster.whole_node

    def observe(self, task: SimTask) -> None:
        return None


@dataclass
class Oracle:
    """Every task gets exactly its peaks: the bound no real policy can beat."""

    name: str = "oracle"

    def request(self, task: SimTask, attempt: int, previous: Request | None) -> Request:
        return Request(task.memory_bytes, task.cores)

    def observe(self, task: SimTask) -> None:
        return None


@dataclass
class FixedGuess:
    """The user's one guess for every task; a task that exceeds it is retried with the
    exhausted resource raised to a whole node's amount (see `escalate`)."""

    guess: Request
    cluster: Cluster
    name: str = "fixed-guess"

    def request(self, task: SimTask, attempt: int, previous: Request | None) -> Request:
        if attempt == 0 or previous is None:
            return self.guess
        return escalate(task, previous, None, self.cluster)

    def observe(self, task: SimTask) -> None:
        return None


def escalate(
    task: SimTask, previous: Request, maximum: Request | None, cluster: Cluster
) -> Request:
    """The retry allocation after `previous` was exhausted.

    As cctools does (`category_dynamic_task_max_resources` with the MAX label): every resource
    goes to the category's max seen when that is larger. A resource that was exhausted and for
    which the max is no larger goes to the node's whole amount; a resource that was *not*
    exhausted is never raised to the whole node (a task killed for memory does not need all 16
    cores, and asking for them would drain a node for nothing).
    """
    node = cluster.whole_node
    m_mem = maximum.memory_bytes if maximum is not None else 0
    m_cores = maximum.cores if maximum is not None else 0
    mem = max(m_mem, previous.memory_bytes)
    cores = max(m_cores, previous.cores)
    if previous.memory_bytes < task.memory_bytes and mem <= previous.memory_bytes:
        mem = node.memory_bytes
    if previous.cores < task.cores and cores <= previous.cores:
        cores = node.cores
    return Request(mem, cores)


@dataclass
class _CategoryState:
    samples: list[tuple[int, int, float]] = field(default_factory=list)  # mem, cores, runtime
    first: Request | None = None
    maximum: Request | None = None
    since_update: int = 0


@dataclass
class Learned:
    """A policy learned online per category, as Work Queue does it.

    Until `learn_k` tasks of a category have completed its tasks run on whole nodes (cctools'
    behaviour for a category without a guess: an unlabeled task gets a whole worker), or, with
    warmup="guess", at the user's `guess` (cctools' `category_specify_first_allocation_guess`:
    the guess is the first allocation until the policy has data), or, with warmup="max-seen",
    at the largest peak seen so far once one task has completed. Then the policy's first
    allocation is used and recomputed every `update_every` completions, and at once when a
    completion raises the maximum. A task exceeding its first allocation is retried at the
    category's max (`max_retries` times), then with the exhausted resource at a whole node's
    amount (`escalate`).
    """

    policy: Policy
    cluster: Cluster
    learn_k: int = 25
    update_every: int = 25
    memory_bucket: int = 250 * MIB
    warmup: Literal["whole-node", "max-seen", "guess"] = "whole-node"
    max_retries: int = 1
    guess: Request | None = None  # warmup="guess": the user's first allocation
    prior: Sequence[SimTask] = ()  # runs measured before (a previous run's reports)
    name: str = ""
    _state: dict[str, _CategoryState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.policy
        for task in self.prior:
            self.observe(task)

    def _clip(self, r: Request) -> Request:
        return Request(
            min(r.memory_bytes, self.cluster.memory_per_node),
            min(r.cores, self.cluster.cores_per_node),
        )

    def _recompute(self, st: _CategoryState) -> None:
        h_mem = build_histogram(((m, t) for m, _, t in st.samples), self.memory_bucket)
        h_cores = build_histogram(((c, t) for _, c, t in st.samples), 1)
        st.maximum = self._clip(Request(max_seen(h_mem), max_seen(h_cores)))
        if len(st.samples) >= self.learn_k:
            st.first = self._clip(
                Request(
                    first_allocation(h_mem, self.policy), first_allocation(h_cores, self.policy)
                )
            )
        elif self.warmup == "max-seen":
            st.first = st.maximum
        st.since_update = 0

    def request(self, task: SimTask, attempt: int, previous: Request | None) -> Request:
        st = self._state.get(task.category)
        first = st.first if st is not None else None
        if first is None and self.warmup == "guess" and self.guess is not None:
            first = self._clip(self.guess)
        if first is None:
            return self.cluster.whole_node
        if attempt == 0:
            return first
        if st is None:  # nothing learned yet: only the node's whole amount is larger
            return escalate(task, previous or first, None, self.cluster)
        if previous is None:
            return self.cluster.whole_node
        return escalate(
            task, previous, None if attempt > self.max_retries else st.maximum, self.cluster
        )

    def learned_max(self, category: str) -> Request | None:
        """The retry allocation learned so far for `category` (None before any sample)."""
        st = self._state.get(category)
        return st.maximum if st is not None else None

    def observe(self, task: SimTask) -> None:
        st = self._state.setdefault(task.category, _CategoryState())
        st.samples.append((task.memory_bytes, task.cores, task.runtime_s))
        st.since_update += 1
        new_max = st.maximum is None or not st.maximum.covers(task)
        n = len(st.samples)
        if new_max or n == self.learn_k or st.since_update >= self.update_every:
            self._recompute(st)


@dataclass(frozen=True)
class SimResult:
    """The outcome of one simulated run."""

    strategy: str
    tasks: int
    makespan_s: float
    attempts: int
    retries: int
    memory_allocated_byte_s: float  # Σ over attempts of allocated memory x duration
    memory_used_byte_s: float  # Σ over tasks of peak memory x runtime (successful runs)
    cores_allocated_core_s: float
    cores_used_core_s: float

    @property
    def throughput_per_hour(self) -> float:
        return self.tasks / self.makespan_s * 3600.0 if self.makespan_s > 0 else 0.0

    @property
    def memory_waste(self) -> float:
        """Share of allocated memory-time not used by a successful run (0..1)."""
        if self.memory_allocated_byte_s <= 0:
            return 0.0
        return 1.0 - self.memory_used_byte_s / self.memory_allocated_byte_s

    @property
    def cores_waste(self) -> float:
        if self.cores_allocated_core_s <= 0:
            return 0.0
        return 1.0 - self.cores_used_core_s / self.cores_allocated_core_s


class SimulationError(ValueError):
    """The input cannot be simulated (a task larger than any node)."""


def _reserve(
    req: Request,
    now: float,
    free_mem: list[int],
    free_cores: list[int],
    running: list[list[tuple[float, Request]]],
) -> int:
    """The node on which `req` could start soonest if nothing else started there."""
    best, best_time = -1, float("inf")
    for n, tasks_on_node in enumerate(running):
        mem, cores, when = free_mem[n], free_cores[n], now
        for end, r in sorted(tasks_on_node, key=lambda e: e[0]):
            if mem >= req.memory_bytes and cores >= req.cores:
                break
            mem, cores, when = mem + r.memory_bytes, cores + r.cores, end
        if when < best_time:
            best, best_time = n, when
    return best


Kill = Literal["end", "ramp"]


def attempt_duration(task: SimTask, req: Request, kill: Kill = "end") -> float:
    """How long an attempt holds its allocation.

    A successful attempt runs `runtime_s`. A failing one runs to its end under "end" (the
    policies' own conservative model: the waste a·t of E(a)); under "ramp" memory grows
    linearly to the peak over the run and the monitor kills the task when it crosses the
    allocation, at runtime·(allocated/peak) (a cores overrun is only seen at the end).
    """
    if req.covers(task) or kill == "end" or req.memory_bytes >= task.memory_bytes:
        return task.runtime_s
    return task.runtime_s * req.memory_bytes / task.memory_bytes


def simulate(
    tasks: Sequence[SimTask], cluster: Cluster, strategy: Strategy, kill: Kill = "end"
) -> SimResult:
    """Run every task to success on `cluster` under `strategy`; return the totals.

    The first pending task that fits nowhere gets a reservation (as Slurm's backfill does for
    its top job): the node where it can start soonest takes no other task until the holder
    starts, so large retries are not starved by a stream of small tasks.
    """
    whole = cluster.whole_node
    for i, t in enumerate(tasks):
        if not whole.covers(t):
            raise SimulationError(f"task {i} needs more than a whole node")
    free_mem = [cluster.memory_per_node] * cluster.nodes
    free_cores = [cluster.cores_per_node] * cluster.nodes
    running: list[list[tuple[float, Request]]] = [[] for _ in range(cluster.nodes)]
    pending: deque[tuple[int, int, Request | None]] = deque((i, 0, None) for i in range(len(tasks)))
    # (end time, sequence, node, task index, attempt, request)
    events: list[tuple[float, int, int, int, int, Request]] = []
    seq = 0
    now = 0.0
    attempts = retries = 0
    mem_alloc = mem_used = core_alloc = core_used = 0.0
    done = 0

    def place(req: Request, excluded: int) -> int:
        for n in range(cluster.nodes):
            if n == excluded:
                continue
            if free_cores[n] >= req.cores and free_mem[n] >= req.memory_bytes:
                return n
        return -1

    holder = -1  # the task holding the reservation (the first one that fit nowhere)
    reserved = -1  # its node: no other task starts there until the holder does
    while done < len(tasks):
        # start whatever fits, in queue order, backfilling past tasks that do not fit
        kept: deque[tuple[int, int, Request | None]] = deque()
        looked_past = 0
        while pending:
            if max(free_cores) == 0 or (holder >= 0 and looked_past >= BACKFILL_WINDOW):
                break
            item = pending.popleft()
            idx, attempt, previous = item
            task = tasks[idx]
            req = strategy.request(task, attempt, previous)
            req = Request(min(req.memory_bytes, whole.memory_bytes), min(req.cores, whole.cores))
            node = place(req, -1 if idx == holder else reserved)
            if node < 0:
                kept.append(item)
                if holder < 0 or idx == holder:
                    holder = idx
                    reserved = _reserve(req, now, free_mem, free_cores, running)
                looked_past += 1
                continue
            if idx == holder:
                holder = reserved = -1
            elif holder >= 0:
                looked_past += 1
            free_cores[node] -= req.cores
            free_mem[node] -= req.memory_bytes
            duration = attempt_duration(task, req, kill)
            running[node].append((now + duration, req))
            attempts += 1
            heapq.heappush(events, (now + duration, seq, node, idx, attempt, req))
            seq += 1
        kept.extend(pending)
        pending = kept
        if not events:
            raise SimulationError("no task can start and none is running")
        end, _, node, idx, attempt, req = heapq.heappop(events)
        task = tasks[idx]
        duration = attempt_duration(task, req, kill)
        now = end
        running[node].remove((end, req))
        free_cores[node] += req.cores
        free_mem[node] += req.memory_bytes
        mem_alloc += req.memory_bytes * duration
        core_alloc += req.cores * duration
        if req.covers(task):
            done += 1
            mem_used += task.memory_bytes * task.runtime_s
            core_used += task.cores * task.runtime_s
            strategy.observe(task)
        else:
            retries += 1
            pending.appendleft((idx, attempt + 1, req))
    return SimResult(
        strategy=strategy.name,
        tasks=len(tasks),
        makespan_s=now,
        attempts=attempts,
        retries=retries,
        memory_allocated_byte_s=mem_alloc,
        memory_used_byte_s=mem_used,
        cores_allocated_core_s=core_alloc,
        cores_used_core_s=core_used,
    )
