#!/usr/bin/env bash
# `make demo`: the whole product on this machine, no Docker, cloud or Together account.
# Starts a real kube-apiserver + etcd, the Together API simulator and the operator; applies
# examples/; shows the GPUCluster going to Ready and its kubeconfig Secret working; on Ctrl-C
# deletes the GPUCluster (and so the simulated cluster) and stops everything.
#   DEMO_SPEED   simulator speed (1 = about a minute to Ready; default 1)
#   DEMO_WAIT    seconds to wait for Ready before giving up (default 300)
#   DEMO_HOLD    "no" to finish right after the tour instead of waiting for Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export TOGETHER_OPERATOR_DEV_DIR="${TOGETHER_OPERATOR_DEV_DIR:-$HOME/.local/state/together-operator/demo}"
speed="${DEMO_SPEED:-1}"
wait_seconds="${DEMO_WAIT:-300}"
workdir="$(mktemp -d)"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
    trap - EXIT INT TERM
    say "cleaning up"
    if [ -n "${KUBECONFIG:-}" ]; then
        "$KUBECTL" delete -f examples/ --ignore-not-found --wait=true --timeout=60s || true
    fi
    together-operator dev down || true
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # Ctrl-C: exit, which runs the cleanup above exactly once

KUBECTL="$(together-operator dev tools | awk '$1 == "kubectl" {print $2}')"
say "starting the local stack (kube-apiserver, etcd, Together simulator, operator)"
eval "$(together-operator dev up --speed "$speed")"
echo "KUBECONFIG=$KUBECONFIG"
echo "TOGETHER_BASE_URL=$TOGETHER_BASE_URL"

say "kubectl apply -f examples/"
"$KUBECTL" apply -f examples/

say "kubectl get gpuclusters (until Ready)"
last=""
deadline=$(( $(date +%s) + wait_seconds ))
while :; do
    now="$("$KUBECTL" get tgc --no-headers 2>/dev/null || true)"
    if [ "$now" != "$last" ]; then
        "$KUBECTL" get tgc
        last="$now"
    fi
    ready="$("$KUBECTL" get tgc training -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
    [ "$ready" = "True" ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "not Ready after ${wait_seconds}s; see $TOGETHER_OPERATOR_DEV_DIR/logs" >&2
        exit 1
    fi
    sleep 1
done

say "phase transitions mirrored from Together"
"$KUBECTL" get tgc training -o jsonpath='{range .status.phaseTransitions[*]}{.transitionTime}  {.phase}{"\n"}{end}'

say "the kubeconfig Secret works"
"$KUBECTL" get secret training-kubeconfig -o jsonpath='{.data.kubeconfig}' | base64 -d > "$workdir/tenant.kubeconfig"
"$KUBECTL" --kubeconfig "$workdir/tenant.kubeconfig" get namespaces

say "events"
"$KUBECTL" get events --field-selector involvedObject.kind=GPUCluster --sort-by=.lastTimestamp \
    -o custom-columns=REASON:.reason,MESSAGE:.message

if [ "${DEMO_HOLD:-yes}" = "no" ]; then
    exit 0
fi
say "the stack keeps running; in another shell: export KUBECONFIG=$KUBECONFIG"
echo "Press Ctrl-C to delete the GPUCluster and stop everything."
while :; do sleep 3600; done
