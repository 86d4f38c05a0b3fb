#!/usr/bin/env bash
# The benchmarks against a real Apache Kafka broker (the integration suite's
# image, one broker in a container on a loopback port), ours against raw
# rdkafka in the same run:
#   1. throughput, steady and backlog drain (benches/throughput/; the
#      broker's container is stopped and started for the backlog);
#   2. the original design's Python algorithm (kafka-python, one blocking
#      send().get() per event) against ours (scripts/seed_vs_ours.py and the
#      `seed_compare` example).
#
#   bash scripts/bench-real-broker.sh                 # all of it
#   BENCH=throughput bash scripts/bench-real-broker.sh -- --rounds 5
#   BENCH=seed bash scripts/bench-real-broker.sh
#
# Installs what it needs (Docker and the image through
# tests/kafka-image/prepare.sh; kafka-python from PyPI into a virtualenv
# under target/), and removes its container when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${KAFKA_IMAGE:-robust-producer/kafka:4.4.0}"
NAME="rp-bench-kafka-$$"
BENCH="${BENCH:-all}"
[ "${1:-}" = "--" ] && shift

bash tests/kafka-image/prepare.sh
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BS="127.0.0.1:$PORT"
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$NAME" -p "127.0.0.1:$PORT:9092" \
    -e KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://$BS" \
    -e KAFKA_HEAP_OPTS="-Xmx1g -Xms1g" "$IMAGE" >/dev/null
for _ in $(seq 1 1200); do
    docker logs "$NAME" 2>&1 | grep -q 'Kafka Server started' && break
    [ "$(docker inspect -f '{{.State.Running}}' "$NAME")" = true ] || { docker logs "$NAME" | tail -20; exit 1; }
    sleep 0.1
done
echo "[bench] broker $NAME ready at $BS"

if [ "$BENCH" = all ] || [ "$BENCH" = throughput ]; then
    cargo bench -p robust-producer-rdkafka --bench throughput -- \
        --bootstrap "$BS" --container "$NAME" "$@"
fi

if [ "$BENCH" = all ] || [ "$BENCH" = seed ]; then
    VENV=target/bench-venv
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -c 'import kafka' 2>/dev/null || "$VENV/bin/pip" install -q kafka-python
    cargo build --release -p robust-producer-rdkafka --example seed_compare
    "$VENV/bin/python" scripts/seed_vs_ours.py --bootstrap "$BS" \
        --ours target/release/examples/seed_compare "$@"
fi
