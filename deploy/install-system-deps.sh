#!/usr/bin/env bash
# Debian packages Slipway needs beyond Python, installed as root when missing:
#   demo: HAProxy, which moves traffic between releases, and redis-server, the embedded broker;
#   test: also Chromium (page tests), socat, Prometheus (promtool, and a live server for the alert loop),
#         Alertmanager, ansible-core (the worker-host playbook), debootstrap and a running Docker Engine.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}

declare -A need=([haproxy]=haproxy [redis-server]=redis-server)
if [ "$what" = test ]; then
  need+=([chromium]=chromium [socat]=socat [dockerd]=docker.io [debootstrap]=debootstrap [promtool]=prometheus [prometheus]=prometheus
         [prometheus-alertmanager]=prometheus-alertmanager [ansible-playbook]=ansible-core)
fi
missing=()
for command in "${!need[@]}"; do
  command -v "$command" >/dev/null || missing+=("${need[$command]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "Install these Debian packages first (as root): ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$what" = test ]; then
  bash deploy/docker/start-dockerd.sh
fi
