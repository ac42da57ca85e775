#!/usr/bin/env bash
# All set-up on a fresh machine, and a quick no-op when it is done: a Docker engine, the Python
# environment (.venv), a base image, the component images and the sample data.
# `setup.sh --python` makes the Python environment only (no Docker): what `make test-fast` needs.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "setup: $*" >&2; }
mkdir -p .cache

# The Python environment, reinstalled when pyproject.toml changes.
python_env() {
  local want py
  want=$(sha256sum pyproject.toml | cut -c1-16)
  if [ "$(cat .venv/.installed 2>/dev/null)" != "$want" ]; then
    py=$(command -v python3.11 || command -v python3)
    say "creating .venv with $($py --version) and the pinned dependencies (a few minutes)"
    "$py" -m venv .venv
    .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
    .venv/bin/pip install -q -e '.[sagemaker,components,serving,plots,console,dev]' 2>&1 | grep -v '^WARNING: Location' >&2 || true
    .venv/bin/python -c 'import kubesage, torch, kfp, docker, fastapi, uvicorn' || { say "install failed"; exit 1; }
    echo "$want" >.venv/.installed
  fi
}
if [ "${1:-}" = --python ]; then
  python_env
  exit 0
fi

# 1. A Docker engine (Debian's docker.io, started here, when none answers and we are root).
if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing Docker (Debian's docker.io)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    else
      say "kubesage needs Docker: install Docker Engine, start it, and run this again"; exit 1
    fi
  fi
  if [ "$(id -u)" = 0 ]; then
    say "starting dockerd (log: .cache/dockerd.log)"
    setsid dockerd >.cache/dockerd.log 2>&1 </dev/null &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  docker info >/dev/null 2>&1 || { say "the Docker engine does not answer; start it"; exit 1; }
fi

# A container registry for the tests of `kubesage build --push` (started by the tests, on loopback).
if ! command -v docker-registry >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing Debian's docker-registry (the tests push images to one on loopback)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
fi

# PostgreSQL for the tests of the team store (the tests start throwaway servers with initdb/pg_ctl
# on loopback; nothing is started here, and the packaged cluster is never used).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] &&
   command -v apt-get >/dev/null; then
  say "installing Debian's postgresql (the store tests start throwaway servers on loopback)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# The console: Graphviz's dot lays its run graphs out; its browser tests drive Debian's chromium
# with Playwright (never a browser Playwright downloads).
missing=""
command -v dot >/dev/null || missing="$missing graphviz"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing Debian's$missing (the console's graphs and its browser tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

# 2. The Python environment.
python_env

# 3. A base image: KUBESAGE_BASE_IMAGE, else python:3.11-slim, else one built with debootstrap.
base=${KUBESAGE_BASE_IMAGE:-}
if [ -z "$base" ]; then
  if docker image inspect python:3.11-slim >/dev/null 2>&1 ||
     timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    base=python:3.11-slim
  else
    base=kubesage/base:bookworm
    docker image inspect "$base" >/dev/null 2>&1 || scripts/base-image.sh "$base"
  fi
fi

# 4. Wheels for the images, fetched once by the host's pip (and its configured indexes), then
#    served to `docker build` on loopback: rebuilds never download them again.
want=$(cat containers/*/requirements*.txt | sha256sum | cut -c1-16)
if [ "$(cat .cache/wheels/.fetched 2>/dev/null)" != "$want" ]; then
  say "fetching wheels for the images into .cache/wheels"
  for req in containers/*/requirements*.txt; do
    .venv/bin/pip download -q -d .cache/wheels -r "$req" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  done
  echo "$want" >.cache/wheels/.fetched
fi

# 5. The component images (layer cache: seconds when only code changed).
.venv/bin/kubesage build --base "$base" --wheelhouse .cache/wheels >/dev/null 2>.cache/build.log ||
  { tail -20 .cache/build.log >&2; say "image build failed (log: .cache/build.log)"; exit 1; }

# 6. The sample data: scikit-learn's digits as PNG files, in the folder that plays FSx.
.venv/bin/kubesage sample-data data/fsx >/dev/null
say "ready"
