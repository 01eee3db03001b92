"""Shared pieces of the training tests: the real Debian text (or a clear skip), and a tiny job."""

from __future__ import annotations

import shutil

import pytest

from racenet.train.data import DEBIAN_PACKAGES, Corpus, source_available
from racenet.train.model import PRESETS
from racenet.train.steps import InnerConfig, JobSpec


def require_source(name: str) -> Corpus:
    """The corpus of a Debian source; skip only when it is missing and apt cannot install it here."""
    if not source_available(name):
        package = DEBIAN_PACKAGES[name]
        if shutil.which("apt-get") is None:
            pytest.skip(f"Debian package {package} is not installed and apt-get is unavailable on this machine")
        pytest.fail(f"Debian package {package} is not installed: run `make install` (apt-get install {package})")
    return Corpus.load(name)


def tiny_job(shards: int = 3, rounds: int = 4, inner_steps: int = 8, data: str = "fortunes") -> JobSpec:
    """A job small enough for many processes on 2 shared cores."""
    return JobSpec(
        PRESETS["tiny"],
        model_seed=1,
        data=data,
        data_seed=42,
        shards=shards,
        rounds=rounds,
        inner_steps=inner_steps,
        inner=InnerConfig(lr=3e-3, batch_size=8),
    )
