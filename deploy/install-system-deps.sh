#!/usr/bin/env bash
# What the tests need beyond Python packages, on Debian 12 as root: Chromium for the page tests,
# HAProxy for traffic, and a running Docker Engine. Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v socat >/dev/null || missing+=(socat)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "Install these Debian packages first (as root): ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -x deploy/docker/start-dockerd.sh ]; then
  bash deploy/docker/start-dockerd.sh
fi
