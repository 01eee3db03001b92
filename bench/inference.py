"""Chat completions through a node's API (transfer agent → executor, escrow on chain) against calling
the model backend directly in the same process, on the same prompts, in the same run.

First it runs the prompts on the backend in this process (nothing else running). Then it starts a
3-validator devnet (each node daemon has the same torch threads; its Race miner runs at a 25% budget and
yields while a request runs; node 1 is the transfer agent, the others execute: an executor busy for a whole
Race window mines little and may hold no weight in the next cycle, so one executor alone is not enough), creates an API
key for the faucet, and sends the same greedy requests with the official `openai` client. Ends with
`RESULT tokens_per_s=<n> direct_tokens_per_s=<n> ratio=<x> p50_ms=<n> p95_ms=<n> ttft_p50_ms=<n>
route_wait_ms=<n> direct_token_ms=<n>`: streamed time to first token, and what the beacon adds to it —
the executor is drawn from the beacon round signed after the Start's block, so routing waits one block.

    python bench/inference.py [--requests 8] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
import torch

from racenet.ml.backend import GenerationRequest, collect
from racenet.ml.transformers_backend import TransformersBackend

MODEL = "SmolLM2-135M-Instruct"
PROMPTS = [
    "Explain what a blockchain is in two sentences.",
    "Write a haiku about autumn.",
    "List three uses of a paperclip.",
    "What is the capital of France? Answer briefly.",
    "Describe a cat to someone who has never seen one.",
    "Give one tip for learning a new language.",
]


def racenet(*args: str) -> str:
    """Run the racenet CLI (devnet keys have an empty passphrase)."""
    env = {**os.environ, "RACENET_PASSPHRASE": ""}
    out = subprocess.run(
        [sys.executable, "-m", "racenet", *args], capture_output=True, text=True, env=env, check=True, timeout=600
    )
    return out.stdout


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def run_direct(backend: TransformersBackend, prompts: list[str], max_tokens: int) -> tuple[int, float, list[float]]:
    """(completion tokens, seconds, per-request latencies) calling the backend in-process."""
    tokens, latencies = 0, []
    for prompt in prompts:
        started = time.perf_counter()
        completion = collect(
            backend.generate(
                GenerationRequest(MODEL, [{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.0)
            )
        )
        latencies.append(time.perf_counter() - started)
        tokens += completion.usage.completion_tokens
    return tokens, sum(latencies), latencies


def run_api(client: openai.OpenAI, prompts: list[str], max_tokens: int) -> tuple[int, float, list[float]]:
    """(completion tokens, seconds, per-request latencies) through the node's API."""
    tokens, latencies = 0, []
    for prompt in prompts:
        started = time.perf_counter()
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0
        )
        latencies.append(time.perf_counter() - started)
        assert answer.usage is not None
        tokens += answer.usage.completion_tokens
    return tokens, sum(latencies), latencies


def run_ttft(client: openai.OpenAI, prompts: list[str], max_tokens: int) -> list[float]:
    """Seconds to the first streamed token through the node's API, per request."""
    firsts = []
    for prompt in prompts:
        started = time.perf_counter()
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        )
        first = None
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        firsts.append(first if first is not None else time.perf_counter() - started)
    return firsts


def block_interval(rpc: str, seconds: float = 10.0) -> float:
    """The chain's mean block interval in seconds, measured over `seconds`."""
    from racenet.node.client import ChainClient

    with ChainClient(rpc) as chain:
        start_height, started = chain.height(), time.monotonic()
        time.sleep(seconds)
        return (time.monotonic() - started) / max(chain.height() - start_height, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--base-port", type=int, default=29656)
    args = parser.parse_args()
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.requests)]
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    backend = TransformersBackend.packaged(threads=threads)
    run_direct(backend, prompts[:1], 8)
    direct = run_direct(backend, prompts, args.max_tokens)
    del backend
    with tempfile.TemporaryDirectory() as tmp:
        net = Path(tmp) / "net"
        racenet(
            "devnet",
            "up",
            "--dir",
            str(net),
            "--validators",
            "3",  # the chain never routes a request to its own transfer agent: two more nodes execute
            "--compute-budgets",
            "0.25,0.25,0.25",
            "--base-port",
            str(args.base_port),
        )
        try:
            status = json.loads(racenet("devnet", "status", "--dir", str(net), "--json"))["nodes"][0]
            wait_for_api(status["rpc"])
            where = ("--home", str(net), "--node", status["rpc"])
            created = racenet("api-key", "create", *where, "--from", "faucet", "--gateway", status["api"], "--json")
            key = json.loads(created)["api_key"]
            client = openai.OpenAI(base_url=status["api"] + "/v1", api_key=key, timeout=300, max_retries=0)
            run_api(client, prompts[:1], 8)
            api = run_api(client, prompts, args.max_tokens)
            ttft = run_ttft(client, prompts, args.max_tokens)
            block_s = block_interval(status["rpc"])
        finally:
            racenet("devnet", "down", "--dir", str(net))
    direct_tps, api_tps = direct[0] / direct[1], api[0] / api[1]
    p50, p95 = percentile(api[2], 0.5) * 1000, percentile(api[2], 0.95) * 1000
    print(f"{args.requests} greedy requests of up to {args.max_tokens} tokens, torch threads {threads}")
    print(
        f"direct backend : {direct[0]} tokens in {direct[1]:.1f}s = {direct_tps:.1f} tokens/s, "
        f"p50 {percentile(direct[2], 0.5) * 1000:.0f} ms"
    )
    print(
        f"API (TA→exec)  : {api[0]} tokens in {api[1]:.1f}s = {api_tps:.1f} tokens/s, p50 {p50:.0f} ms, "
        f"p95 {p95:.0f} ms, mean {statistics.mean(api[2]) * 1000:.0f} ms"
    )
    ttft_p50, direct_first = percentile(ttft, 0.5) * 1000, percentile(direct[2], 0.5) * 1000 / args.max_tokens
    print(
        f"time to first token (stream): p50 {ttft_p50:.0f} ms; of it, waiting for the executor draw's beacon round "
        f"(one block after the Start's) costs one block interval, {block_s * 1000:.0f} ms here"
    )
    print(
        f"RESULT tokens_per_s={api_tps:.2f} direct_tokens_per_s={direct_tps:.2f} ratio={api_tps / direct_tps:.3f} "
        f"p50_ms={p50:.0f} p95_ms={p95:.0f} ttft_p50_ms={ttft_p50:.0f} route_wait_ms={block_s * 1000:.0f} "
        f"direct_token_ms={direct_first:.0f}"
    )


def wait_for_api(rpc: str) -> None:
    """Wait until every node announced its API on chain (model loaded, ServeModels committed): the transfer
    agent never executes its own requests, so the others must serve."""
    from racenet.chain.modules import inference
    from racenet.node.client import ChainClient

    with ChainClient(rpc) as chain:
        deadline = time.monotonic() + 300
        while len(chain.query(inference.SERVERS, MODEL).servers) < 3:
            if time.monotonic() > deadline:
                raise SystemExit("the node did not start serving the model within 300 s")
            time.sleep(1)


if __name__ == "__main__":
    main()
