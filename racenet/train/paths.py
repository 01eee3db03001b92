"""Path sharding (DiPaCo): a participant holds and trains only one path of a model made of shared modules.

A job's model is cut into **modules**, named groups of parameters (the model parameters whose names start with one
of the module's prefixes). A **path** is a list of modules that together make one whole `GPT` (every parameter in
exactly one of them) plus the data routed to it, as DiPaCo routes documents to paths. Paths share modules: in
`shared_trunk`, every path chains the same trunk (embeddings, the tied output head, the first blocks) with its own
upper blocks and final LayerNorm, trained on its own domain.

Each participant (job slot) is assigned one path and builds that path's GPT only: it never materialises another
path's modules. A round is DiLoCo's (`racenet.train.diloco`, reused as is): H inner AdamW steps on the slot's
shard of its path's data, then the pseudo-gradient is averaged, but **per module and only among the round's
members holding it**: the round's process group (from the `Barrier`'s plan, as in DiLoCo) is split into one gloo
sub-group per module, each all-reduces its module, and the outer Nesterov SGD steps with the module means. The
outer SGD is elementwise, so each module's update depends only on its own mean and momentum.

Agreement: after the reductions every member all-gathers a table of 32-byte digests (one row per module, zero
where the member does not hold it); a member reports "" to the barrier if two holders of a module disagree,
otherwise the hash of the whole table, which is the same at every member, so the barrier's commit rule applies
unchanged. The digest table (32 bytes per module per member) is not counted in `bytes_sent`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from racenet.train import pol
from racenet.train.data import Corpus
from racenet.train.diloco import (
    Barrier,
    DiLoCoWorker,
    Endpoint,
    RoundPlan,
    StoreBarrier,
    WorkerConfig,
    WorkerResult,
    committed_round,
    ring_bytes,
    round_group,
)
from racenet.train.model import GPT, GPTConfig
from racenet.train.steps import InnerConfig, JobSpec, evaluate

DIGEST_BYTES = 32


@dataclass(frozen=True)
class Module:
    """A named group of parameters: those whose names start with one of `prefixes`."""

    name: str
    prefixes: tuple[str, ...]


@dataclass(frozen=True)
class PathSpec:
    """One path: the modules it chains (together one whole model) and the data source routed to it."""

    name: str
    modules: tuple[str, ...]
    data: str


@dataclass(frozen=True)
class PathJob:
    """A path-sharded job: the model, its modules and paths, which path each slot trains, DiLoCo's parameters."""

    model: GPTConfig
    model_seed: int
    data_seed: int
    modules: tuple[Module, ...]
    paths: tuple[PathSpec, ...]
    assignment: tuple[int, ...]
    """The path index of every slot."""
    rounds: int
    inner_steps: int
    inner: InnerConfig = field(default_factory=InnerConfig)
    outer_lr: float = 0.7
    outer_momentum: float = 0.9

    def __post_init__(self) -> None:
        names = [m.name for m in self.modules]
        if len(set(names)) != len(names):
            raise ValueError(f"module names repeat: {names}")
        for path in self.paths:
            unknown = set(path.modules) - set(names)
            if unknown or len(set(path.modules)) != len(path.modules):
                raise ValueError(f"path {path.name} names unknown or repeated modules: {path.modules}")
        if not all(0 <= p < len(self.paths) for p in self.assignment):
            raise ValueError(f"assignment {self.assignment} names paths outside 0..{len(self.paths) - 1}")

    def path_of(self, slot: int) -> PathSpec:
        """The path slot `slot` trains."""
        return self.paths[self.assignment[slot]]

    def holders(self, module: str) -> tuple[int, ...]:
        """The slots whose path contains `module`."""
        return tuple(s for s in range(len(self.assignment)) if module in self.path_of(s).modules)

    def path_spec(self, slot: int) -> tuple[JobSpec, int]:
        """The DiLoCo job of this slot's path (its data, one shard per slot on the path) and the slot's shard."""
        index = self.assignment[slot]
        peers = [s for s, p in enumerate(self.assignment) if p == index]
        spec = JobSpec(
            self.model,
            self.model_seed,
            self.paths[index].data,
            self.data_seed,
            len(peers),
            self.rounds,
            self.inner_steps,
            self.inner,
            self.outer_lr,
            self.outer_momentum,
        )
        return spec, peers.index(slot)


def shared_trunk(
    config: GPTConfig, trunk_layers: int, sources: Sequence[str]
) -> tuple[tuple[Module, ...], tuple[PathSpec, ...]]:
    """One path per data source; all share a trunk (embeddings, tied head, first `trunk_layers` blocks), each has
    its own upper blocks and final LayerNorm (module `<source>/upper`)."""
    if not 0 < trunk_layers < config.n_layer:
        raise ValueError(f"the trunk needs 1..{config.n_layer - 1} of the {config.n_layer} blocks")
    trunk = Module("trunk", ("wte.", "wpe.", *(f"blocks.{i}." for i in range(trunk_layers))))
    upper = (*(f"blocks.{i}." for i in range(trunk_layers, config.n_layer)), "ln_f.")
    modules = (trunk, *(Module(f"{s}/upper", upper) for s in sources))
    return modules, tuple(PathSpec(s, ("trunk", f"{s}/upper"), s) for s in sources)


def module_positions(names: Sequence[str], modules: Sequence[Module]) -> dict[str, list[int]]:
    """Positions (in `names`) of each module's parameters; every parameter must be in exactly one module."""
    positions: dict[str, list[int]] = {m.name: [] for m in modules}
    for i, name in enumerate(names):
        owners = [m.name for m in modules if name.startswith(m.prefixes)]
        if len(owners) != 1:
            raise ValueError(f"parameter {name} is in modules {owners}, not in exactly one")
        positions[owners[0]].append(i)
    empty = [m for m, found in positions.items() if not found]
    if empty:
        raise ValueError(f"modules {empty} hold no parameter")
    return positions


class PathWorker(DiLoCoWorker):
    """A DiLoCo participant that holds one path and averages each of its modules only with that module's holders.

    `config.slot` is the job slot (the barrier's); the inner DiLoCo worker uses the slot's shard of its path and
    checkpoints under `config.checkpoint_dir / participant<slot>`.
    """

    def __init__(self, job: PathJob, corpus: Corpus, config: WorkerConfig, barrier: Barrier) -> None:
        spec, shard = job.path_spec(config.slot)
        inner_config = replace(config, slot=shard, checkpoint_dir=config.checkpoint_dir / f"participant{config.slot}")
        super().__init__(spec, corpus, inner_config, barrier)
        self.path_job, self.participant = job, config.slot
        self.path = job.path_of(config.slot)
        held = [m for m in job.modules if m.name in self.path.modules]
        self.positions = module_positions(self.names, held)
        sizes = [g.numel() for g in self.global_params]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.index = {
            m: torch.cat([torch.arange(offsets[i], offsets[i] + sizes[i]) for i in found])
            for m, found in self.positions.items()
        }
        self.module_bytes = dict.fromkeys(self.positions, 0)

    def module_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """The global weights of every held module, by parameter name."""
        return {m: {self.names[i]: self.global_params[i] for i in found} for m, found in self.positions.items()}

    def _module_means(self, plan: RoundPlan, delta: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Each held module's mean over its holders in the plan (one sub-group per module); the agreed digest."""
        job, timeout_s = self.path_job, self.config.collective_timeout_s
        mean = delta.clone()
        table = torch.zeros(len(job.modules), DIGEST_BYTES, dtype=torch.uint8)
        with round_group(plan, self.participant, timeout_s) as name:
            device = "cuda" if name == "nccl" else "cpu"
            holder_ranks = []
            for row, module in enumerate(job.modules):
                ranks = [plan.rank(s) for s in plan.members if s in job.holders(module.name)]
                holder_ranks.append(ranks)
                if not ranks:
                    continue
                group = dist.new_group(ranks, timeout=timedelta(seconds=timeout_s), backend=name)
                if module.name in self.index:
                    assert isinstance(group, dist.ProcessGroup)  # a holder is a member of its module's group
                    buf = delta[self.index[module.name]].to(device)
                    dist.all_reduce(buf, group=group)
                    piece = (buf / len(ranks)).cpu()
                    mean[self.index[module.name]] = piece
                    table[row] = torch.frombuffer(bytearray.fromhex(pol.state_hash(piece)), dtype=torch.uint8)
            gathered = [torch.empty_like(table, device=device) for _ in plan.members]
            dist.all_gather(gathered, table.to(device))
        tables = [t.cpu() for t in gathered]
        for row, ranks in enumerate(holder_ranks):
            if len({bytes(tables[r][row].tolist()) for r in ranks}) > 1:
                return mean, ""
        return mean, hashlib.sha256(b"".join(bytes(t.flatten().tolist()) for t in tables)).hexdigest()

    def _average(self, round_: int, delta: torch.Tensor, result: WorkerResult) -> torch.Tensor:
        """The round's per-module means, retrying with the survivors until the barrier commits."""
        mean, plan = committed_round(
            self.barrier, round_, self.participant, self.config.host, lambda plan: self._module_means(plan, delta)
        )
        for m, index in self.index.items():
            holders = [s for s in plan.members if s in self.path_job.holders(m)]
            sent = ring_bytes(index.numel(), len(holders))
            self.module_bytes[m] += sent
            result.bytes_sent += sent
        return mean


def run_path_participant(
    job: PathJob,
    config: WorkerConfig,
    coordinator: Endpoint,
    result_path: Path,
    barrier_timeout_s: float = 120.0,
) -> None:
    """A participant process's entry point: train the slot's path, write the result JSON with its modules.

    Besides DiLoCo's result, the JSON holds `path`, `modules` (per held module its weights hash, parameter count
    and bytes sent) and `domain_losses` (the final path model's held-out loss on every path's data).
    """
    corpus = Corpus.load(job.path_of(config.slot).data)
    worker = PathWorker(job, corpus, config, StoreBarrier(coordinator, barrier_timeout_s))
    result = worker.run()
    model = GPT(job.model)
    model.load_state_dict(worker.global_state())
    domain_losses = {p.data: evaluate(model, Corpus.load(p.data)) for p in job.paths}
    modules = {
        m: {"hash": pol.state_hash(state), "numel": worker.index[m].numel(), "bytes_sent": worker.module_bytes[m]}
        for m, state in worker.module_states().items()
    }
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({**asdict(result), "path": worker.path.name, "modules": modules, "domain_losses": domain_losses})
    )
    os.replace(tmp, result_path)
