#!/usr/bin/env bash
# Start Docker Engine on a machine without systemd (development boxes and CI) and wait until it
# answers. Idempotent: does nothing when the engine already answers.
#   SLIPWAY_DOCKER_DATA_ROOT  image and container store (default /var/lib/docker; keep it across
#                             CI runs so the base and dependency images stay cached)
#   SLIPWAY_DOCKERD_LOG       dockerd's log file (default /var/log/dockerd.log)
set -euo pipefail

data_root=${SLIPWAY_DOCKER_DATA_ROOT:-/var/lib/docker}
log_file=${SLIPWAY_DOCKERD_LOG:-/var/log/dockerd.log}

if docker info >/dev/null 2>&1; then
  echo "Docker Engine already answers."
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "Installing docker.io (Debian package)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

# No bridge and no iptables: containers use --network host, each on its own port.
nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
  --data-root "$data_root" >>"$log_file" 2>&1 &

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "Docker Engine is up (data root $data_root, log $log_file)."
    exit 0
  fi
  sleep 1
done
echo "Docker Engine did not answer within 60 s; see $log_file" >&2
exit 1
