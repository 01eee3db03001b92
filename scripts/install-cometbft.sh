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

GO_HINT="install Go >= 1.22 (Debian 13: apt-get install golang; Debian 12's golang is 1.19:
use apt-get install -t bookworm-backports golang-1.23-go) and re-run $0"
if ! command -v go >/dev/null 2>&1; then
    echo "error: 'go' not found; ${GO_HINT}" >&2
    exit 1
fi
GO_MINOR="$(go env GOVERSION | sed -nE 's/^go1\.([0-9]+).*/\1/p')"
if [[ -z "${GO_MINOR}" || "${GO_MINOR}" -lt 22 ]]; then
    echo "error: $(go env GOVERSION) is too old; ${GO_HINT}" >&2
    exit 1
fi

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
