#!/usr/bin/env bash
# Installs DejaVu Sans, the PDF reports' typeface (Latin, Greek and Cyrillic notes). Idempotent.
# Without it reports fall back to the Vera font inside reportlab, which covers Latin-1 only.
set -euo pipefail

if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq fonts-dejavu-core >/dev/null
fi
ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
