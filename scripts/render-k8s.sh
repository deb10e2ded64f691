#!/usr/bin/env bash
# Regenerates what is derived from other files, so there is one source for each:
#   monitoring/rules/fer-alerts.yml     -> helm/fer-platform/files/fer-alerts.yml   (PrometheusRule)
#   monitoring/grafana/fer-platform.json -> helm/fer-platform/files/fer-platform.json (dashboard ConfigMap)
#   helm/fer-platform + k8s/values.yaml -> k8s/fer-platform.yaml                    (plain manifests)
# With --check it changes nothing and exits 1 when anything is out of step.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM="${HELM:-}"
if [ -z "$HELM" ]; then
  if [ -x "$REPO/.tools/bin/helm" ]; then HELM="$REPO/.tools/bin/helm"; else HELM="$(command -v helm || true)"; fi
fi
[ -n "$HELM" ] || { echo "helm not found: run scripts/install-deploy-tools.sh" >&2; exit 2; }

CHART="$REPO/helm/fer-platform"
NAMESPACE=fer
check=0
[ "${1:-}" = "--check" ] && check=1

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

render() {
  {
    echo "# Rendered from helm/fer-platform with k8s/values.yaml by scripts/render-k8s.sh (make k8s)."
    echo "# Do not edit: change the chart or k8s/values.yaml and regenerate."
    "$HELM" template fer "$1" --namespace "$NAMESPACE" -f "$REPO/k8s/values.yaml"
  } > "$2"
}

status=0
sync() {  # sync SOURCE DEST
  if ! cmp -s "$1" "$2"; then
    if [ "$check" -eq 1 ]; then
      echo "out of step: ${2#"$REPO"/} differs from ${1#"$REPO"/} (run: make k8s)" >&2
      status=1
    else
      cp "$1" "$2"
      echo "updated ${2#"$REPO"/}"
    fi
  fi
}

if [ "$check" -eq 1 ]; then
  # Render from a copy of the chart holding the source files, so a stale copy cannot hide a stale render.
  cp -r "$CHART" "$tmp/chart"
  cp "$REPO/monitoring/rules/fer-alerts.yml" "$tmp/chart/files/fer-alerts.yml"
  cp "$REPO/monitoring/grafana/fer-platform.json" "$tmp/chart/files/fer-platform.json"
  sync "$REPO/monitoring/rules/fer-alerts.yml" "$CHART/files/fer-alerts.yml"
  sync "$REPO/monitoring/grafana/fer-platform.json" "$CHART/files/fer-platform.json"
  render "$tmp/chart" "$tmp/fer-platform.yaml"
else
  sync "$REPO/monitoring/rules/fer-alerts.yml" "$CHART/files/fer-alerts.yml"
  sync "$REPO/monitoring/grafana/fer-platform.json" "$CHART/files/fer-platform.json"
  render "$CHART" "$tmp/fer-platform.yaml"
fi
if [ "$check" -eq 1 ] && ! cmp -s "$tmp/fer-platform.yaml" "$REPO/k8s/fer-platform.yaml"; then
  diff -u "$REPO/k8s/fer-platform.yaml" "$tmp/fer-platform.yaml" | head -40 >&2 || true
fi
sync "$tmp/fer-platform.yaml" "$REPO/k8s/fer-platform.yaml"
exit "$status"
