#!/usr/bin/env bash
# Everything the real-Kafka integration tests need, idempotently:
#   1. a Docker engine that answers (ensure-docker.sh),
#   2. the Kafka image $KAFKA_IMAGE (build-image.sh; default robust-producer/kafka:4.4.0).
# Exits non-zero with a message naming what is missing. See README.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
start=$(date +%s)

"$HERE/ensure-docker.sh" \
    || { echo "[prepare] FAILED: no usable Docker engine (see the ensure-docker messages above)" >&2; exit 1; }
"$HERE/build-image.sh" \
    || { echo "[prepare] FAILED: Kafka image ${KAFKA_IMAGE:-robust-producer/kafka:4.4.0} is not available (see the build-image messages above)" >&2; exit 1; }

echo "[prepare] ready: image ${KAFKA_IMAGE:-robust-producer/kafka:4.4.0}, docker at ${DOCKER_HOST:-unix:///var/run/docker.sock} ($(( $(date +%s) - start )) s)"
