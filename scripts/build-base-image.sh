#!/usr/bin/env bash
# Builds a local stand-in for python:3.11-slim-bookworm, for machines that cannot pull from a registry
# (this one, CI): Debian bookworm from Debian's mirror with debootstrap (its python3 is 3.11), plus what
# deploy/docker/Dockerfile runs — `python` on PATH, venv, groupadd/useradd, apt-get, CA certificates.
# Cached: the image is labelled with a hash of this recipe, and a run that finds it does nothing.
#   scripts/build-base-image.sh [IMAGE]       default localhost/py311-bookworm:local
# ENGINE=docker|buildah (default: docker when its daemon answers, else buildah); DEBIAN_MIRROR overrides the mirror.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${1:-${BASE_IMAGE:-localhost/py311-bookworm:local}}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PACKAGES="python3,python3-venv,python-is-python3,ca-certificates"
RECIPE="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"

log() { printf '[base-image] %s\n' "$*"; }

if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=buildah; fi
fi

recipe_of() {  # the recipe label of an existing image, empty when there is none
  if [ "$ENGINE" = docker ]; then
    docker image inspect -f '{{ index .Config.Labels "fer.base.recipe" }}' "$1" 2>/dev/null || true
  else
    buildah inspect --type image -f '{{ index .OCIv1.Config.Labels "fer.base.recipe" }}' "$1" 2>/dev/null || true
  fi
}

if [ "$(recipe_of "$IMAGE")" = "$RECIPE" ]; then
  log "$IMAGE is up to date (recipe $RECIPE): nothing to do"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { log "debootstrap needs root"; exit 1; }
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null; }
fi

work="$(mktemp -d /var/tmp/fer-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
start=$SECONDS

# What debian:bookworm-slim (and so python:3.11-slim) leaves out of every later apt-get install too:
# documentation, manual pages, translations. Written before debootstrap's second stage installs anything.
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat > "$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF

log "debootstrap bookworm (minbase + $PACKAGES) from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log"; log "debootstrap failed (full log above)"; exit 1; }

# The official image is current with Debian's security and point updates; so is this one.
cat > "$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf"
chroot "$root" /bin/sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q' > "$work/upgrade.log" 2>&1 \
  || { tail -20 "$work/upgrade.log"; log "apt-get upgrade in the new root failed"; exit 1; }
chroot "$root" apt-get clean
# What debootstrap's first stage unpacked before the exclusions applied.
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/*
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
: > "$root/etc/resolv.conf"   # the runtime provides its own
chroot "$root" python --version >/dev/null || { log "no python in the new root"; exit 1; }

# /dev, /proc and /sys are the runtime's: only their (empty) directories go into the image.
tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf "$work/rootfs.tar" .
if [ "$ENGINE" = docker ]; then
  docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --change "LABEL fer.base.recipe=$RECIPE" "$work/rootfs.tar" "$IMAGE" >/dev/null
else
  ctr="$(buildah from scratch)"
  buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
  buildah config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 --label "fer.base.recipe=$RECIPE" "$ctr"
  buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
fi
log "built $IMAGE ($(chroot "$root" python --version 2>&1), recipe $RECIPE) in $((SECONDS - start)) s"
