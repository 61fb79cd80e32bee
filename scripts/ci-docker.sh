#!/usr/bin/env bash
# Make this machine able to run Docker sandboxes (idempotent): install the Docker engine and debootstrap when
# missing, start dockerd when no engine answers, then build the runner image (skipped when it is current).
# Runs as root (CI). DOCKERD_ARGS adds flags to dockerd; its log goes to ${DOCKERD_LOG:-/tmp/dockerd.log}.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "ci-docker: installing ${need[*]}" >&2
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "ci-docker: starting dockerd" >&2
  # setsid + nohup: the engine outlives this script and the CI step that ran it.
  # shellcheck disable=SC2086
  setsid nohup dockerd ${DOCKERD_ARGS:-} >"${DOCKERD_LOG:-/tmp/dockerd.log}" 2>&1 < /dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "ci-docker: dockerd did not answer within 60 s; its log:" >&2
    tail -n 40 "${DOCKERD_LOG:-/tmp/dockerd.log}" >&2 || true
    exit 1
  fi
fi

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
"$PYTHON" -m worker.engine.image build
