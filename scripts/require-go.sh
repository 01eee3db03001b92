# Sourced by the install scripts: stop with a clear message unless Go >= 1.22 is on PATH.
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
