#!/usr/bin/env bash
# Build a Python 3.11 base image without any container registry: Debian bookworm from Debian's
# package mirror (debootstrap), imported as a Docker image. Usage: scripts/base-image.sh NAME:TAG
set -euo pipefail
name=${1:-kubesage/base:bookworm}
if ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "base-image: debootstrap is missing; install it (apt-get install debootstrap)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "base-image: debootstrap bookworm into $root (about a minute)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$root" >/dev/null
tar -C "$root" -c . | docker import - "$name" >/dev/null
echo "base-image: $name" >&2
