#!/usr/bin/env bash
# `make test-existing-cluster`: the integration suite against a one-node cluster that it sees
# only through a kubeconfig, as it would see kind. `dev up --in-cluster --no-operator` brings
# up the node (no operator: the tests run their own); `dev down` removes it, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
if [ "$(id -u)" != 0 ]; then
    echo "the one-node cluster needs root (an address on lo, a bridge, iptables rules)" >&2
    if [ -n "${CI:-}" ]; then exit 1; fi
    echo "skipped: run as root to test against the node" >&2
    exit 0
fi
state="$(mktemp -d)"
export TOGETHER_OPERATOR_DEV_DIR="$state/dev"
cleanup() {
    together-operator dev down || true
    rm -rf "$state"
}
trap cleanup EXIT
start=$(date +%s)
eval "$(together-operator dev up --in-cluster --no-operator)"
echo "== node up in $(( $(date +%s) - start ))s; integration suite against $KUBECONFIG"
USE_EXISTING_CLUSTER=1 pytest tests/integration
