#!/usr/bin/env bash
# Generate Python protobuf modules for CometBFT's ABCI types into racenet/abci/pb/.
#
# The .proto files come from the pinned CometBFT release itself (via the Go module cache), plus
# the gogoproto module its go.mod requires (its protos import gogoproto/gogo.proto). The
# generated `from tendermint.x import y_pb2` imports are rewritten to absolute
# `racenet.abci.pb.tendermint.x` imports, so the output is an ordinary subpackage and needs no
# sys.path changes. Well-known types (google/protobuf/*) come from the protobuf runtime.
set -euo pipefail

COMETBFT_VERSION="0.38.26"
DOWNLOAD_TIMEOUT_S="${DOWNLOAD_TIMEOUT_S:-300}"
ROOT_PROTO="tendermint/abci/types.proto"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
OUT_DIR="${REPO_ROOT}/racenet/abci/pb"
PY_PACKAGE="racenet.abci.pb"

# shellcheck source=require-go.sh
source "${REPO_ROOT}/scripts/require-go.sh"

WORK_DIR="$(mktemp -d)"
trap 'rm -rf "${WORK_DIR}"' EXIT

# module_dir MODULE@VERSION: download a Go module (outside any go.mod) and print its directory.
module_dir() {
    (cd "${WORK_DIR}" && GO111MODULE=on timeout "${DOWNLOAD_TIMEOUT_S}" go mod download -json "$1") |
        "${PYTHON}" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

CMT_DIR="$(module_dir "github.com/cometbft/cometbft@v${COMETBFT_VERSION}")"
GOGO_VERSION="$(awk '$1 == "github.com/cosmos/gogoproto" { print $2; exit }' "${CMT_DIR}/go.mod")"
if [[ -z "${GOGO_VERSION}" ]]; then
    echo "error: cometbft v${COMETBFT_VERSION} go.mod does not require github.com/cosmos/gogoproto" >&2
    exit 1
fi
GOGO_DIR="$(module_dir "github.com/cosmos/gogoproto@${GOGO_VERSION}")"
WKT_DIR="$("${PYTHON}" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"

# Collect ROOT_PROTO and its transitive imports that live in the CometBFT or gogoproto trees.
declare -A seen=()
queue=("${ROOT_PROTO}")
while ((${#queue[@]})); do
    proto="${queue[0]}"
    queue=("${queue[@]:1}")
    [[ -n "${seen[${proto}]:-}" ]] && continue
    seen["${proto}"]=1
    for base in "${CMT_DIR}/proto" "${GOGO_DIR}"; do
        if [[ -f "${base}/${proto}" ]]; then
            while read -r dep; do queue+=("${dep}"); done < <(sed -n 's/^import "\(.*\)";.*/\1/p' "${base}/${proto}")
        fi
    done
done
protos=()
for proto in "${!seen[@]}"; do
    [[ "${proto}" == google/protobuf/* ]] || protos+=("${proto}")
done

rm -rf "${OUT_DIR}"
mkdir -p "${OUT_DIR}"
"${PYTHON}" -m grpc_tools.protoc \
    -I "${CMT_DIR}/proto" -I "${GOGO_DIR}" -I "${WKT_DIR}" \
    --python_out="${OUT_DIR}" --pyi_out="${OUT_DIR}" \
    "${protos[@]}"

# Make every generated directory a regular package and its imports absolute. protoc writes
# module-level extension constants as `NAME: _ClassVar[int]`, which mypy rejects outside a
# class body: unwrap those to `NAME: int`.
find "${OUT_DIR}" -type d -exec touch {}/__init__.py \;
find "${OUT_DIR}" -name '*_pb2.py' -o -name '*_pb2.pyi' | while read -r file; do
    sed -i -E \
        -e "s/^from (tendermint|gogoproto)([. ])/from ${PY_PACKAGE}.\1\2/" \
        -e 's/^([A-Za-z_][A-Za-z0-9_]*): _ClassVar\[(.*)\]$/\1: \2/' \
        "${file}"
done
echo "generated $(find "${OUT_DIR}" -name '*_pb2.py' | wc -l) modules from cometbft v${COMETBFT_VERSION} (gogoproto ${GOGO_VERSION}) into ${OUT_DIR}"
