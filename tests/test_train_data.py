"""Training data: the Debian texts load, shards are disjoint, and every step's indices are recomputable."""

from __future__ import annotations

import itertools

import torch

from racenet.train.data import Corpus, batch_starts, segment_indices
from racenet.train.model import GPT, PRESETS, parameter_count
from tests.train_helpers import require_source


def test_debian_sources_load_as_real_text() -> None:
    bible = require_source("bible-kjv")
    assert len(bible.tokens) > 4_000_000
    assert "In the beginning God created the heaven and the earth." in bytes(bible.tokens[:2000].tolist()).decode()
    fortunes = require_source("fortunes")
    assert len(fortunes.tokens) > 1_000_000
    assert Corpus.load("fortunes").digest == fortunes.digest


def test_a_text_file_is_a_source(tmp_path: object) -> None:
    corpus = Corpus.from_text("abc" * 1000)
    assert corpus.tokens[:3].tolist() == [97, 98, 99]
    assert corpus.train_end == 2850


def test_shards_are_disjoint_and_cover_the_training_part() -> None:
    corpus = require_source("fortunes")
    ranges = [corpus.shard_range(s, 3) for s in range(3)]
    assert ranges[0][0] == 0 and ranges[-1][1] == corpus.train_end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_batch_indices_are_a_pure_function_of_the_job() -> None:
    corpus = require_source("fortunes")
    a = batch_starts(corpus, 7, 1, 3, 5, 8, 32)
    assert torch.equal(a, batch_starts(corpus, 7, 1, 3, 5, 8, 32))
    assert not torch.equal(a, batch_starts(corpus, 7, 1, 3, 6, 8, 32))
    assert not torch.equal(a, batch_starts(corpus, 8, 1, 3, 5, 8, 32))
    lo, hi = corpus.shard_range(1, 3)
    assert bool(((a >= lo) & (a + 33 <= hi)).all())
    seg = segment_indices(corpus, 7, 1, 3, 4, 3, 8, 32)
    assert seg.shape == (3, 8) and torch.equal(seg[1], a)


def test_presets_build_and_predict_bytes() -> None:
    for name, config in PRESETS.items():
        model = GPT(config, seed=3)
        logits, loss = model(
            torch.zeros(2, config.block_size, dtype=torch.int64), torch.zeros(2, config.block_size, dtype=torch.int64)
        )
        assert logits.shape == (2, config.block_size, 256) and loss is not None
        assert parameter_count(model) < 300_000, name
        same = GPT(config, seed=3)
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), same.parameters(), strict=True))
