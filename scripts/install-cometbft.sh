#!/usr/bin/env bash
# Install the pinned CometBFT release into <repo>/.bin with `go install` (idempotent).
# CometBFT is the BFT consensus engine racenet's Python state machine runs behind (ABCI 2.0).
set -euo pipefail

COMETBFT_VERSION="0.38.26"
INSTALL_TIMEOUT_S="${INSTALL_TIMEOUT_S:-900}"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${REPO_ROOT}/.bin"
COMETBFT="${BIN_DIR}/cometbft"

if [[ -x "${COMETBFT}" ]] && [[ "$("${COMETBFT}" version 2>/dev/null || true)" == "${COMETBFT_VERSION}"* ]]; then
    echo "cometbft ${COMETBFT_VERSION} already installed at ${COMETBFT}"
    exit 0
fi

# shellcheck source=require-go.sh
source "${REPO_ROOT}/scripts/require-go.sh"

mkdir -p "${BIN_DIR}"
echo "installing cometbft v${COMETBFT_VERSION} into ${BIN_DIR} (timeout ${INSTALL_TIMEOUT_S}s)"
# Run outside any Go module so `go install pkg@version` uses only the pinned module graph.
WORK_DIR="$(mktemp -d)"
trap 'rm -rf "${WORK_DIR}"' EXIT
cd "${WORK_DIR}"
GOBIN="${BIN_DIR}" GO111MODULE=on timeout "${INSTALL_TIMEOUT_S}" \
    go install "github.com/cometbft/cometbft/cmd/cometbft@v${COMETBFT_VERSION}"

installed="$("${COMETBFT}" version)"
if [[ "${installed}" != "${COMETBFT_VERSION}"* ]]; then
    echo "error: installed cometbft reports version '${installed}', expected ${COMETBFT_VERSION}" >&2
    exit 1
fi
echo "cometbft ${installed} installed at ${COMETBFT}"
