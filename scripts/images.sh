#!/usr/bin/env bash
# Builds the platform's images under the names the Helm chart renders: <REGISTRY>/fer-<name>:<TAG>
# (helm --set image.registry=REGISTRY --set image.tag=TAG), plus fer-<name>:local for docker-compose.yml.
#   scripts/images.sh [NAME...]     gateway auth inference reports training triton (default: all six)
#   scripts/images.sh --list [NAME...]   print "NAME REFERENCE" lines and build nothing
# Environment: REGISTRY (default localhost), TAG (default: the git revision, -dirty with local changes),
# ENGINE=docker|buildah (default: docker when its daemon answers, else buildah, installed with apt if
# missing), PYTHON_IMAGE (the Python 3.11 base; default python:3.11-slim-bookworm, or the local
# debootstrap one from scripts/build-base-image.sh when no registry can be pulled from), TRITON_VERSION,
# BUILD_CA_BUNDLE (see below).
# An image whose base cannot be had here (Triton's is on nvcr.io) is skipped with the reason; a failed
# build fails the run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
ALL="gateway auth inference reports training triton"
REGISTRY="${REGISTRY:-localhost}"
TAG="${TAG:-$(git describe --always --dirty --abbrev=12 2>/dev/null || echo dev)}"
PUBLIC_PYTHON_IMAGE="python:3.11-slim-bookworm"
LOCAL_PYTHON_IMAGE="localhost/py311-bookworm:local"
# The Triton release pairs with the training torch: pyproject.toml pins both ([tool.fer-platform.serving]).
TRITON_VERSION="${TRITON_VERSION:-$(python3 scripts/serving_pair.py triton)}"
TRITON_BASE="nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3"

# A host that trusts CAs of its own (/usr/local/share/ca-certificates: a TLS-inspecting proxy's, as
# here) must let the build's pip trust them too. buildah mounts the host's bundle over the image's for
# the RUN steps only: nothing of it stays in an image. BUILD_CA_BUNDLE="" turns that off.
if [ -z "${BUILD_CA_BUNDLE+set}" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  BUILD_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fi
BUILD_CA_BUNDLE="${BUILD_CA_BUNDLE:-}"

log() { printf '[images] %s\n' "$*"; }
ref() { printf '%s/fer-%s:%s' "$REGISTRY" "$1" "$TAG"; }

list=0
if [ "${1:-}" = "--list" ]; then list=1; shift; fi
names="${*:-$ALL}"
for name in $names; do
  case " $ALL " in *" $name "*) ;; *) log "unknown image '$name'; known: $ALL"; exit 2 ;; esac
done
if [ "$list" -eq 1 ]; then
  for name in $names; do echo "$name $(ref "$name")"; done
  exit 0
fi

if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=buildah; fi
fi
if [ "$ENGINE" = buildah ] && ! command -v buildah >/dev/null; then
  log "no Docker engine and no buildah: installing buildah (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends buildah >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends buildah >/dev/null; }
fi

# docker build cannot mount host files into RUN steps: its daemon's own trust store applies.
[ "$ENGINE" = buildah ] || BUILD_CA_BUNDLE=""

have_image() {
  if [ "$ENGINE" = docker ]; then docker image inspect "$1" >/dev/null 2>&1; else buildah inspect --type image "$1" >/dev/null 2>&1; fi
}
# Pull a base once; a registry that cannot be reached fails within the timeout instead of hanging.
# The pull's last error line is kept in $pull_error for the SKIPPED line.
pull_error=""
fetch() {
  have_image "$1" && return 0
  local out
  if [ "$ENGINE" = docker ]; then out="$(timeout 600 docker pull -q "$1" 2>&1)" && return 0
  else out="$(timeout 600 buildah pull --quiet --retry 0 "$1" 2>&1)" && return 0; fi
  pull_error="$(printf '%s\n' "$out" | tail -1)"
  return 1
}
build() {  # build NAME DOCKERFILE [ARGS...]
  local name="$1" file="$2"; shift 2
  if [ "$ENGINE" = docker ]; then
    docker build -f "$file" "$@" -t "$(ref "$name")" -t "fer-$name:local" .
  else
    # chroot isolation: no user namespaces or rlimits are needed (this machine forbids both). Docker
    # format: OCI image configs have no HEALTHCHECK, which compose reads.
    local mounts=()
    [ -z "$BUILD_CA_BUNDLE" ] || mounts=(--volume "$BUILD_CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
    buildah bud --isolation chroot --layers --pull=false --format docker "${mounts[@]}" \
      -f "$file" "$@" -t "$(ref "$name")" -t "fer-$name:local" .
  fi
}

needs_python=0
for name in $names; do [ "$name" = triton ] || needs_python=1; done
if [ "$needs_python" -eq 1 ] && [ -z "${PYTHON_IMAGE:-}" ]; then
  if fetch "$PUBLIC_PYTHON_IMAGE"; then
    PYTHON_IMAGE="$PUBLIC_PYTHON_IMAGE"
  else
    log "cannot pull $PUBLIC_PYTHON_IMAGE (no registry reachable): using the local Debian bookworm base"
    ENGINE="$ENGINE" bash "$REPO/scripts/build-base-image.sh" "$LOCAL_PYTHON_IMAGE"
    PYTHON_IMAGE="$LOCAL_PYTHON_IMAGE"
  fi
fi

log "engine $ENGINE; names $(ref NAME); base ${PYTHON_IMAGE:-none}${BUILD_CA_BUNDLE:+; build steps trust $BUILD_CA_BUNDLE}"
built=() skipped=() failed=()
for name in $names; do
  start=$SECONDS
  case "$name" in
    training) args=(deploy/docker/Dockerfile --target training --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE") ;;
    triton)
      if ! fetch "$TRITON_BASE"; then
        skipped+=("triton: its base $TRITON_BASE cannot be pulled here ($pull_error)")
        continue
      fi
      args=(deploy/triton/Dockerfile --build-arg "TRITON_VERSION=$TRITON_VERSION") ;;
    *) args=(deploy/docker/Dockerfile --build-arg "SERVICE=$name" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE") ;;
  esac
  log "building $(ref "$name")"
  if build "$name" "${args[@]}"; then
    built+=("$(ref "$name") in $((SECONDS - start)) s")
  else
    failed+=("$name (build failed after $((SECONDS - start)) s; its output is above)")
  fi
done

for line in "${built[@]}"; do log "built   $line"; done
for line in "${skipped[@]}"; do log "SKIPPED $line"; done
for line in "${failed[@]}"; do log "FAILED  $line"; done
if [ "${#built[@]}" -gt 0 ]; then
  log "deploy them: helm ... --set image.registry=$REGISTRY --set image.tag=$TAG (push first: make images-push)"
fi
[ "${#failed[@]}" -eq 0 ]
