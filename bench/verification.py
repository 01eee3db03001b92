"""What a spot check costs and what it catches, on SmolLM2-135M on this machine (whitepaper §6).

(a) check_speedup: seconds to generate an answer (KV-cached, as an executor does) over seconds to check it (one
    teacher-forced pass plus the sampling replay, `racenet.ml.check`), same answers, same thread count, this run.
(b) detection per check: the share of each cheat's answers (`racenet.ml.cheats`) that one check fails, over
    several prompts and sampling settings; and honest answers (fp32 and bf16) that fail (should be 0).
(c) per-cycle detection of an executor that cheats on 10% of its tasks, for tasks served per cycle, at the check
    probability of a new node (every task) and of a trusted node (1 in 10, whitepaper §6):
    1 - (1 - cheat_rate · p_check · detection)^tasks.
(d) verification_share at steady state: trusted nodes, so p_check · check cost / generation cost.

    python bench/verification.py [--prompts 6] [--max-tokens 128] [--json]

Ends with `RESULT verification_share=… check_speedup=… min_detection=…`, where min_detection is the lowest
per-cycle detection over the cheat types at a 10% cheat rate for a trusted node serving `REFERENCE_TASKS` tasks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from racenet.ml import cheats
from racenet.ml.backend import ChatMessage
from racenet.ml.calibrate_check import PROMPTS
from racenet.ml.check import Sampling, check_answer
from racenet.ml.sampling import request_sampling_seed
from racenet.ml.transformers_backend import TransformersBackend

CHEAT_RATE = 0.1
NEW_NODE_CHECK = 1.0
TRUSTED_NODE_CHECK = 0.1
REFERENCE_TASKS = 1000
TASKS = (10, 100, 1000, 10000)
SETTINGS = ((0.0, 1.0), (0.7, 0.9))


def cycle_detection(detection: float, p_check: float, tasks: int) -> float:
    """P(at least one failed check in a cycle) for an executor cheating on CHEAT_RATE of `tasks`."""
    return 1.0 - (1.0 - CHEAT_RATE * p_check * detection) ** tasks


Case = tuple[list[ChatMessage], Sampling]


def cases(prompts: int, max_tokens: int) -> list[Case]:
    """The requests every executor answers: each prompt at each sampling setting, seeded as a routed request."""
    found: list[Case] = []
    for i, text in enumerate(PROMPTS[:prompts]):
        for temperature, top_p in SETTINGS:
            seed = request_sampling_seed(bytes([i]) * 32, None)
            found.append(([{"role": "user", "content": text}], Sampling(temperature, top_p, seed, max_tokens)))
    return found


def honest_runs(model: TransformersBackend, requests: list[Case]) -> tuple[list[float], list[float], int, int]:
    """Generation and check seconds of fp32 answers, and the honest (fp32 and bf16) answers a check failed."""
    generate_s, check_s, failures, answers = [], [], 0, 0
    for executor in (model, model.in_dtype(torch.bfloat16)):
        for messages, sampling in requests:
            start = time.perf_counter()
            answer = cheats.generate(executor, messages, sampling)
            generated = time.perf_counter() - start
            prompt = model.tokenize_chat(messages)
            start = time.perf_counter()
            result = check_answer(model, prompt, sampling, answer)
            checked = time.perf_counter() - start
            answers += 1
            failures += not result.passed
            if executor is model and answer.token_ids:
                generate_s.append(generated)
                check_s.append(checked)
    return generate_s, check_s, failures, answers


def detection_per_check(model: TransformersBackend, requests: list[Case]) -> dict[cheats.Cheat, float]:
    """The share of each cheat's answers that one check fails."""
    detection: dict[cheats.Cheat, float] = {}
    for kind in cheats.CHEATS:
        answer_like = cheats.cheater(kind, model)
        caught = 0
        for messages, sampling in requests:
            prompt = model.tokenize_chat(messages)
            caught += not check_answer(model, prompt, sampling, answer_like(messages, sampling)).passed
        detection[kind] = caught / len(requests)
    return detection


def per_cycle(detection: float) -> dict[str, float]:
    """Per-cycle detection for a new and a trusted node at each number of tasks served."""
    checks = (("new", NEW_NODE_CHECK), ("trusted", TRUSTED_NODE_CHECK))
    return {f"{label}_{tasks}": cycle_detection(detection, p, tasks) for label, p in checks for tasks in TASKS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = TransformersBackend.packaged(threads=1)
    requests = cases(args.prompts, args.max_tokens)
    generate_s, check_s, honest_failures, honest_answers = honest_runs(model, requests)
    speedup = statistics.median(g / c for g, c in zip(generate_s, check_s, strict=True))
    detection = detection_per_check(model, requests)
    table = {kind: per_cycle(d) for kind, d in detection.items()}
    min_detection = min(cycle_detection(d, TRUSTED_NODE_CHECK, REFERENCE_TASKS) for d in detection.values())
    share = TRUSTED_NODE_CHECK / speedup
    if args.json:
        doc = {
            "check_speedup": speedup,
            "verification_share": share,
            "min_detection": min_detection,
            "honest_failures": honest_failures,
            "honest_answers": honest_answers,
            "detection_per_check": detection,
            "per_cycle": table,
        }
        print(json.dumps(doc, indent=1))
    else:
        generate, check = statistics.median(generate_s), statistics.median(check_s)
        print(f"generate {generate:.2f} s, check {check:.3f} s per answer (median)")
        print(f"honest answers failed: {honest_failures} of {honest_answers} (fp32 and bf16 executors)")
        header = " | ".join(f"{label} {tasks}" for label in ("new", "trusted") for tasks in TASKS)
        print(f"| cheat | per check | {header} |")
        print("|---" * (2 + 2 * len(TASKS)) + "|")
        for kind, d in detection.items():
            cells = " | ".join(f"{v:.3f}" for v in table[kind].values())
            print(f"| {kind} | {d:.2f} | {cells} |")
    print(f"RESULT verification_share={share:.4f} check_speedup={speedup:.1f} min_detection={min_detection:.4f}")


if __name__ == "__main__":
    main()
