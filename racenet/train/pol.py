"""Proof-of-learning (whitepaper Appendix L): commitments to training states, and re-running a segment to check them.

**What a participant commits.** A DiLoCo round of H inner steps is cut into segments of `k` steps. After the round,
before the beacon says which segments will be checked, the participant commits a `RoundTrace`: the hash of the
weights and of the AdamW state at every segment boundary (boundary 0 is the round's global weights) and the hash of
each segment's data indices. The beacon then picks segments; for each one the participant opens a `Segment`
artifact (previous weights and optimizer state, current weights and optimizer state, data indices) whose
`SegmentCommitment` must match the trace. Artifacts stay off-chain (`save_segment`/`load_segment`, loaded with
`weights_only=True` since they come from untrusted peers); the chain holds only the hashes. Because every boundary
is committed before the choice, a faked stretch anywhere in the round breaks at least one link that the
beacon may pick.

**Canonical bytes** (`canonical_bytes`): a state (a model `state_dict`, an optimizer `state_dict`, a tensor) is
flattened to (path, leaf) records, paths joined with "/" from dict keys and list positions, records sorted by path.
A tensor leaf is `b"T"`, its dtype name, `b":"`, its shape as decimal numbers joined by "," and `b":"`, then its
elements in row-major order as little-endian bytes. Any other leaf (int, float, bool, str, None) is `b"S"` and its
JSON text (Python's shortest round-trip float repr). Each record is the path's UTF-8 bytes and the payload, each
prefixed by its length (8 bytes, big-endian). A hash is SHA-256 of `b"racenet/train/pol/v1"` and the records.

**What a verifier does** (`verify_segment`): check the hashes against the commitment (and the trace), recompute
the data indices from the public job (`racenet.train.data`), check the optimizer hyperparameters are the job's,
re-run the k steps from the previous weights and optimizer state, and compare with the claimed weights:
distance = ||θ_rerun - θ_claimed||₂ / ||θ_claimed - θ_prev||₂ (error relative to the size of the update).

**Tolerance.** Honest reruns on one machine differ only by floating-point reduction order (thread count,
instruction set). Measured with `python -m racenet.train.pol` (re-run with 1 thread what was trained with 2;
model `tiny` and `small`, 8 segments each, AdamW lr 3e-3, batch 8):

| preset | k | honest max (2 vs 1 threads) | skipped last step (min) | weights from k/2 steps | 1% noise |
|---|---|---|---|---|---|
| tiny | 4 | 4.0e-05 | 0.29 | 0.81 | 0.0099 |
| tiny | 16 | 3.9e-04 | 0.052 | 0.78 | 0.010 |
| small | 4 | 1.2e-05 | 0.25 | 0.70 | 0.010 |
| small | 16 | 2.5e-04 | 0.058 | 0.68 | 0.010 |

(No training at all gives an infinite distance; training on another slot's data about 0.1.) Honest noise grows
with the segment length — AdamW divides by √v, which amplifies reduction-order differences on near-zero
gradients — to ~4e-4 at k = 16, while the subtlest cheat here (noise of 1% of the update's size) sits at 1e-2:
`TOLERANCE = 2e-3` is 5× above the worst honest figure and 5× below that cheat. Keep segments short (k ≤ 16) and
re-measure on other hardware (instruction sets could not be varied on this machine).

**Honeypots** (`honeypot`): the protocol plants segments that are flawed in known ways but carry consistent
hashes — weights perturbed by noise, the last step skipped, weights from half the steps, no training at all, or
training on other data than the committed indices. A validator that passes one is penalized by the chain.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from racenet.train.data import Corpus, segment_indices
from racenet.train.model import GPT, PRESETS
from racenet.train.steps import JobSpec, inner_optimizer, inner_step

DOMAIN = b"racenet/train/pol/v1"
TOLERANCE = 2e-3
"""Largest relative distance an honest re-run may show (see the table above)."""

State = Mapping[str, Any]
HoneypotKind = Literal["perturbed", "skipped_step", "fewer_steps", "no_training", "wrong_data"]
HONEYPOT_KINDS: tuple[HoneypotKind, ...] = ("perturbed", "skipped_step", "fewer_steps", "no_training", "wrong_data")


def _records(value: Any, path: str) -> Iterator[tuple[str, bytes]]:
    """(path, payload) of every leaf under `value`."""
    if isinstance(value, Mapping):
        for key in value:
            yield from _records(value[key], f"{path}/{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _records(item, f"{path}/{i}")
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        head = f"T{str(t.dtype).removeprefix('torch.')}:{','.join(map(str, t.shape))}:".encode()
        yield path, head + t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
    elif value is None or isinstance(value, bool | int | float | str):
        yield path, b"S" + json.dumps(value).encode()
    else:
        raise TypeError(f"cannot hash a {type(value).__name__} at {path or '/'}")


def canonical_bytes(value: Any) -> bytes:
    """The canonical encoding of a state (see the module docs)."""
    out = bytearray()
    for path, payload in sorted(_records(value, "")):
        raw = path.encode()
        out += len(raw).to_bytes(8, "big") + raw + len(payload).to_bytes(8, "big") + payload
    return bytes(out)


def state_hash(value: Any) -> str:
    """Hex SHA-256 of the canonical bytes of a state."""
    return hashlib.sha256(DOMAIN + canonical_bytes(value)).hexdigest()


def clone_state(value: Any) -> Any:
    """A deep copy of a state with tensors cloned (a snapshot that later training does not change)."""
    if isinstance(value, Mapping):
        return {k: clone_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone_state(v) for v in value]
    if isinstance(value, tuple):
        return tuple(clone_state(v) for v in value)
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return value


@dataclass(frozen=True)
class Boundary:
    """A training state at a segment boundary: its weights and its AdamW state."""

    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


@dataclass(frozen=True)
class Segment:
    """The off-chain artifact of one segment: k inner steps of slot `shard` from global step `first_step`."""

    shard: int
    first_step: int
    indices: torch.Tensor
    """Window starts, shape [k, batch]."""
    prev: Boundary
    current: Boundary

    @property
    def steps(self) -> int:
        """k, the segment's number of inner steps."""
        return int(self.indices.shape[0])


@dataclass(frozen=True)
class SegmentCommitment:
    """The hashes a segment is checked against (what goes on chain)."""

    shard: int
    first_step: int
    steps: int
    prev_weights: str
    prev_optimizer: str
    weights: str
    optimizer: str
    data: str


@dataclass(frozen=True)
class RoundTrace:
    """Everything a participant commits after a round, before the beacon picks segments to check."""

    shard: int
    first_step: int
    segment_steps: int
    weights: tuple[str, ...]
    """Weights hash at each boundary (len = segments + 1); [0] is the round's global weights."""
    optimizers: tuple[str, ...]
    data: tuple[str, ...]
    """Data-indices hash of each segment."""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RoundTrace:
        """A trace from its JSON form (`dataclasses.asdict`)."""
        return cls(
            int(raw["shard"]),
            int(raw["first_step"]),
            int(raw["segment_steps"]),
            tuple(raw["weights"]),
            tuple(raw["optimizers"]),
            tuple(raw["data"]),
        )

    def commitment(self) -> bytes:
        """The 32-byte hash the chain's round report carries (SHA-256 of the domain and the trace's JSON)."""
        return hashlib.sha256(DOMAIN + json.dumps(asdict(self), sort_keys=True).encode()).digest()

    def segment(self, i: int) -> SegmentCommitment:
        """The commitment segment `i` of the round must open to."""
        return SegmentCommitment(
            self.shard,
            self.first_step + i * self.segment_steps,
            self.segment_steps,
            self.weights[i],
            self.optimizers[i],
            self.weights[i + 1],
            self.optimizers[i + 1],
            self.data[i],
        )


def commit(segment: Segment) -> SegmentCommitment:
    """The commitment of a segment artifact."""
    return SegmentCommitment(
        segment.shard,
        segment.first_step,
        segment.steps,
        state_hash(segment.prev.weights),
        state_hash(segment.prev.optimizer),
        state_hash(segment.current.weights),
        state_hash(segment.current.optimizer),
        state_hash(segment.indices),
    )


def trace(shard: int, first_step: int, boundaries: Sequence[Boundary], indices: Sequence[torch.Tensor]) -> RoundTrace:
    """The round trace of `len(indices)` consecutive segments whose states are `boundaries`."""
    if len(boundaries) != len(indices) + 1:
        raise ValueError("a trace needs one more boundary than segments")
    return RoundTrace(
        shard,
        first_step,
        int(indices[0].shape[0]),
        tuple(state_hash(b.weights) for b in boundaries),
        tuple(state_hash(b.optimizer) for b in boundaries),
        tuple(state_hash(ix) for ix in indices),
    )


def _one_storage_per_dtype(value: Any) -> Any:
    """The same state with every tensor a view into one buffer per dtype (a file with few storages loads fast)."""
    leaves: list[torch.Tensor] = []

    def collect(v: Any) -> None:
        if isinstance(v, Mapping):
            for x in v.values():
                collect(x)
        elif isinstance(v, list | tuple):
            for x in v:
                collect(x)
        elif isinstance(v, torch.Tensor):
            leaves.append(v)

    collect(value)
    buffers = {dt: torch.cat([t.reshape(-1) for t in leaves if t.dtype == dt]) for dt in {t.dtype for t in leaves}}
    offsets = dict.fromkeys(buffers, 0)
    views: dict[int, torch.Tensor] = {}
    for t in leaves:
        start = offsets[t.dtype]
        views[id(t)] = buffers[t.dtype][start : start + t.numel()].view(t.shape)
        offsets[t.dtype] = start + t.numel()

    def rebuild(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: rebuild(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rebuild(x) for x in v]
        if isinstance(v, tuple):
            return tuple(rebuild(x) for x in v)
        return views[id(v)] if isinstance(v, torch.Tensor) else v

    return rebuild(value)


def save_segment(path: Path, segment: Segment) -> None:
    """Write an artifact atomically (a peer serves these files on demand)."""
    tmp = path.with_suffix(".tmp")
    raw = {
        "shard": segment.shard,
        "first_step": segment.first_step,
        "indices": segment.indices,
        "prev": {"weights": segment.prev.weights, "optimizer": segment.prev.optimizer},
        "current": {"weights": segment.current.weights, "optimizer": segment.current.optimizer},
    }
    torch.save(_one_storage_per_dtype(raw), tmp)
    os.replace(tmp, path)


def load_segment(path: Path) -> Segment:
    """Read an artifact from an untrusted peer (tensors and plain containers only)."""
    raw = torch.load(path, weights_only=True)
    return Segment(
        int(raw["shard"]),
        int(raw["first_step"]),
        raw["indices"],
        Boundary(raw["prev"]["weights"], raw["prev"]["optimizer"]),
        Boundary(raw["current"]["weights"], raw["current"]["optimizer"]),
    )


@dataclass(frozen=True)
class Verdict:
    """A validator's finding on one segment: "" reason means it passed."""

    reason: str
    distance: float = float("nan")

    @property
    def passed(self) -> bool:
        return self.reason == ""


def run_segment(job: JobSpec, corpus: Corpus, prev: Boundary, indices: torch.Tensor) -> Boundary:
    """Train `len(indices)` inner steps from a boundary state (what both the prover and the verifier run)."""
    model = GPT(job.model, seed=0)
    model.load_state_dict(prev.weights)
    opt = inner_optimizer(model.parameters(), job.inner)
    opt.load_state_dict(clone_state(prev.optimizer))
    for row in indices:
        inner_step(model, opt, corpus, row, job.inner.grad_clip)
    return Boundary(clone_state(model.state_dict()), clone_state(opt.state_dict()))


def _hyperparameters(groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """An optimizer's param groups without their parameter ids (tuples as lists, as they round-trip)."""
    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"} for g in groups]


def relative_distance(rerun: State, claimed: State, prev: State) -> float:
    """||rerun - claimed|| / ||claimed - prev|| over all weights (inf when the claim does not move at all)."""
    err = sum(float((rerun[k].double() - claimed[k].double()).pow(2).sum()) for k in claimed)
    step = sum(float((claimed[k].double() - prev[k].double()).pow(2).sum()) for k in claimed)
    if step == 0.0:
        return float("inf")
    return float((err / step) ** 0.5)


def verify_segment(
    job: JobSpec,
    corpus: Corpus,
    commitment: SegmentCommitment,
    segment: Segment,
    tolerance: float = TOLERANCE,
) -> Verdict:
    """Check an opened segment against its commitment and the job, by re-running it (malformed artifacts fail)."""
    try:
        return _verify(job, corpus, commitment, segment, tolerance)
    except (TypeError, ValueError, KeyError, RuntimeError, AttributeError, IndexError) as e:
        return Verdict(f"malformed: {type(e).__name__}: {e}")


def _verify(job: JobSpec, corpus: Corpus, commitment: SegmentCommitment, segment: Segment, tolerance: float) -> Verdict:
    if commit(segment) != commitment:
        return Verdict("hash: the artifact does not match its commitment")
    expected = segment_indices(
        corpus,
        job.data_seed,
        segment.shard,
        job.shards,
        segment.first_step,
        segment.steps,
        job.inner.batch_size,
        job.model.block_size,
    )
    if not torch.equal(expected, segment.indices):
        return Verdict("data: the indices are not the job's for this slot and step")
    fresh = inner_optimizer([torch.nn.Parameter(torch.zeros(1))], job.inner).state_dict()["param_groups"]
    for state in (segment.prev, segment.current):
        if _hyperparameters(state.optimizer.get("param_groups", [])) != _hyperparameters(fresh):
            return Verdict("optimizer: hyperparameters differ from the job's")
    rerun = run_segment(job, corpus, segment.prev, segment.indices)
    if set(segment.current.weights) != set(rerun.weights):
        return Verdict("weights: parameter names differ from the model's")
    distance = relative_distance(rerun.weights, segment.current.weights, segment.prev.weights)
    if not distance <= tolerance:
        return Verdict(f"weights: re-run differs by {distance:.3g} of the update (tolerance {tolerance:g})", distance)
    return Verdict("", distance)


def honeypot(job: JobSpec, corpus: Corpus, honest: Segment, kind: HoneypotKind, seed: int = 0) -> Segment:
    """A deliberately flawed copy of an honest segment, with consistent hashes, that a verifier must reject."""
    prev, indices = honest.prev, honest.indices
    if kind == "perturbed":
        gen = torch.Generator().manual_seed(seed)
        weights = {}
        for name, w in honest.current.weights.items():
            update = w - prev.weights[name]
            noise = torch.randn(w.shape, generator=gen) * float(update.pow(2).mean().sqrt()) * 0.01
            weights[name] = w + noise.to(w.dtype)
        current = Boundary(weights, honest.current.optimizer)
    elif kind == "skipped_step":
        current = run_segment(job, corpus, prev, indices[:-1])
    elif kind == "fewer_steps":
        current = run_segment(job, corpus, prev, indices[: max(1, len(indices) // 2)])
    elif kind == "no_training":
        current = Boundary(clone_state(prev.weights), clone_state(prev.optimizer))
    elif kind == "wrong_data":
        other = (honest.shard + 1) % job.shards
        wrong = segment_indices(
            corpus,
            job.data_seed,
            other,
            job.shards,
            honest.first_step,
            honest.steps,
            job.inner.batch_size,
            job.model.block_size,
        )
        current = run_segment(job, corpus, prev, wrong)
    else:
        raise ValueError(f"unknown honeypot kind {kind!r}")
    return Segment(honest.shard, honest.first_step, indices, prev, current)


def make_segment(job: JobSpec, corpus: Corpus, shard: int, first_step: int, steps: int, prev: Boundary) -> Segment:
    """Honestly train a segment from `prev` (for calibration, honeypots and tests)."""
    indices = segment_indices(
        corpus, job.data_seed, shard, job.shards, first_step, steps, job.inner.batch_size, job.model.block_size
    )
    return Segment(shard, first_step, indices, prev, run_segment(job, corpus, prev, indices))


def initial_boundary(job: JobSpec) -> Boundary:
    """The job's initial model with a fresh AdamW state."""
    model = GPT(job.model, seed=job.model_seed)
    return Boundary(
        clone_state(model.state_dict()), clone_state(inner_optimizer(model.parameters(), job.inner).state_dict())
    )


def calibrate(preset: str, segment_steps: int, segments: int, source: str) -> dict[str, float]:
    """Max honest distance (trained with 2 threads, re-run with 1) and the smallest distance of each cheat."""
    job = JobSpec(PRESETS[preset], 0, source, 7, 2, rounds=1, inner_steps=segment_steps * segments)
    corpus = Corpus.load(source)
    threads = torch.get_num_threads()
    state = initial_boundary(job)
    found: dict[str, float] = {"honest": 0.0, **{k: float("inf") for k in HONEYPOT_KINDS}}
    try:
        for i in range(segments):
            torch.set_num_threads(2)
            seg = make_segment(job, corpus, 0, i * segment_steps, segment_steps, state)
            torch.set_num_threads(1)
            found["honest"] = max(found["honest"], verify_segment(job, corpus, commit(seg), seg, float("inf")).distance)
            for kind in HONEYPOT_KINDS:
                fake = honeypot(job, corpus, seg, kind, seed=i)
                verdict = verify_segment(job, corpus, commit(fake), fake, float("inf"))
                found[kind] = min(found[kind], verdict.distance)
            state = seg.current
    finally:
        torch.set_num_threads(threads)
    return found


def main() -> None:
    """Print the calibration table of the module docs (`--json` for the raw figures)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--source", default="fortunes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for preset, steps in (("tiny", 4), ("tiny", 16), ("small", 4), ("small", 16)):
        found = calibrate(preset, steps, args.segments, args.source)
        rows.append({"preset": preset, "segment_steps": steps, **found})
        if not args.json:
            print(
                f"| {preset} | {steps} | {found['honest']:.2g} | {found['skipped_step']:.2g} | "
                f"{found['fewer_steps']:.2g} | {found['perturbed']:.2g} |",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
