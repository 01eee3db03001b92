"""Benchmark the in-process SmolLM2 backend: GGUF conversion, cached load, greedy generation, one-pass re-scoring.

Run: `.venv/bin/python bench/backend.py [--tokens 64] [--threads N] [--keep-cache DIR]`. The conversion is timed
into a fresh temporary cache (unless --keep-cache names a folder); the other numbers use that cache. Ends with
`RESULT convert_s=<x> load_s=<x> tokens_per_s=<x> score_s=<x> generate_s=<x> score_speedup=<x>`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from racenet.ml.backend import ChatMessage, GenerationRequest, collect
from racenet.ml.model_files import SMOLLM2, ensure_cached
from racenet.ml.transformers_backend import TransformersBackend

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def main() -> None:
    """Time each stage once (after one warm-up generation) and print a RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=64, help="tokens to generate and re-score")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--keep-cache", type=Path, default=None, help="cache root to convert into and keep")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep_cache or Path(scratch)
        start = time.perf_counter()
        ensure_cached(SMOLLM2, root)
        convert_s = time.perf_counter() - start

        start = time.perf_counter()
        backend = TransformersBackend.packaged(cache_dir=root, threads=args.threads)
        load_s = time.perf_counter() - start

    messages: list[ChatMessage] = [{"role": "user", "content": PROMPT}]
    warmup = GenerationRequest(model=backend.name, messages=messages, max_tokens=4, temperature=0.0)
    collect(backend.generate(warmup))
    request = GenerationRequest(
        model=backend.name, messages=messages, max_tokens=args.tokens, temperature=0.0, top_logprobs=5
    )
    start = time.perf_counter()
    completion = collect(backend.generate(request))
    generate_s = time.perf_counter() - start
    generated = completion.usage.completion_tokens

    prompt = backend.tokenize_chat(messages)
    ids = [i for i in completion.token_ids if i is not None]
    start = time.perf_counter()
    scores = backend.score(prompt, ids)
    score_s = time.perf_counter() - start
    drift = max(abs(s.logprob - t.logprob) for s, t in zip(scores, completion.tokens, strict=True))

    print(f"torch threads: {torch.get_num_threads()}, prompt tokens: {len(prompt)}, generated: {generated}")
    print(f"GGUF -> safetensors conversion: {convert_s:.2f} s; cached load: {load_s:.2f} s")
    print(f"greedy generation: {generated} tokens in {generate_s:.2f} s = {generated / generate_s:.1f} tokens/s")
    print(f"re-scoring {generated} tokens in one pass: {score_s:.3f} s ({generate_s / score_s:.1f}x cheaper)")
    print(f"max |logprob(score) - logprob(generate)|: {drift:.2e}")
    print(
        f"RESULT convert_s={convert_s:.2f} load_s={load_s:.2f} tokens_per_s={generated / generate_s:.1f} "
        f"score_s={score_s:.3f} generate_s={generate_s:.2f} score_speedup={generate_s / score_s:.1f}"
    )


if __name__ == "__main__":
    main()
