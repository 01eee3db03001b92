"""The fine-tuning engine without a chain: strict JSONL parsing, the answer-only loss mask, and adapters as one
hashed safetensors file that merges into the base weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from racenet.finetune import lora
from racenet.finetune.data import MAX_FILE_BYTES, DataError, parse_jsonl
from racenet.ml.transformers_backend import TransformersBackend

LINE = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello."}]}  # fmt: skip


@pytest.fixture(scope="module")
def base() -> TransformersBackend:
    return TransformersBackend.packaged()


def test_a_valid_file_parses_blank_lines_skipped() -> None:
    raw = (json.dumps(LINE) + "\n\n" + json.dumps(LINE) + "\n").encode()
    assert [len(e.messages) for e in parse_jsonl(raw)] == [3, 3]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (json.dumps(LINE).encode() + b"\n[1, 2]", "line 2: expected"),
        (b'{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]}', "message 0"),
        (b'{"messages": [{"role": "assistant", "content": "x", "tool_calls": []}]}', "role and content"),
        (b" " * (MAX_FILE_BYTES + 1), "bytes"),
    ],
)
def test_bad_files_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_jsonl(raw)


def test_only_the_answer_is_learned(base: TransformersBackend) -> None:
    [example] = parse_jsonl(json.dumps(LINE).encode())
    encoded = lora.encode(base.tokenizer, example, 512)
    learned = [t for t, label in zip(encoded.ids, encoded.labels, strict=True) if label != lora.IGNORE]
    text = base.tokenizer.decode(learned)
    assert isinstance(text, str) and text.strip() == "Hello.<|im_end|>"
    with pytest.raises(DataError, match="at most 8 are accepted"):
        lora.encode(base.tokenizer, example, 8)


def test_an_adapter_is_one_hashed_file_that_merges_into_the_base(base: TransformersBackend, tmp_path: Path) -> None:
    hp = lora.Hyperparameters()
    untrained = lora.add_lora(base.model, hp)  # LoRA's B starts at zero: the merged model is the base model
    digest = lora.save_adapter(untrained, tmp_path / "a.safetensors", hp)
    assert digest == lora.file_hash(tmp_path / "a.safetensors") and len(digest) == 64
    assert not list(tmp_path.glob("*.partial"))
    merged = lora.merged_model(base.model, tmp_path / "a.safetensors")
    ids = torch.tensor([base.tokenize_chat([{"role": "user", "content": "Hi"}])])
    with torch.inference_mode():
        assert torch.equal(merged(input_ids=ids).logits, base.model(input_ids=ids).logits)
