#!/usr/bin/env bash
# The whole test suite, on a fresh machine: unit, property, driver, mock
# scenario, librdkafka mock-cluster and real-Kafka integration tests, and
# doctests (the README's included).
#
# It first installs the build's system packages when missing (Debian's
# libssl-dev and pkg-config, for the TLS feature the integration tests
# enable: scripts/ensure-build-deps.sh), then makes sure a Docker engine
# runs and the Kafka image is built (tests/kafka-image/prepare.sh: installs
# Debian's docker.io, starts dockerd, fetches Kafka from Maven Central and
# builds the image; each step is skipped when done).
#
#   ROBUST_PRODUCER_SKIP_KAFKA=1   skip the real-Kafka part locally (ignored when CI=true)
#   PROPTEST_CASES=N               cases per property (default 1000)
#   KAFKA_IMAGE=name:tag           broker image (default robust-producer/kafka:4.4.0)
set -euo pipefail
cd "$(dirname "$0")/.."

# OpenSSL headers and pkg-config for the `tls` feature (scripts/ensure-build-deps.sh).
bash scripts/ensure-build-deps.sh

if [[ "${CI:-}" == "true" || "${ROBUST_PRODUCER_SKIP_KAFKA:-}" != "1" ]]; then
    if ! bash tests/kafka-image/prepare.sh; then
        echo "test-all: the real-Kafka prerequisites could not be prepared (see above)." >&2
        echo "test-all: set ROBUST_PRODUCER_SKIP_KAFKA=1 to run the rest locally (not honoured under CI=true)." >&2
        exit 1
    fi
else
    echo "test-all: ROBUST_PRODUCER_SKIP_KAFKA=1: real-Kafka tests will report themselves skipped"
fi

echo "== the core's normal dependencies contain no async runtime"
runtimes=$(cargo tree -p robust-producer -e normal --prefix none | grep -E '^(tokio|async-std|smol|async-executor|async-io) ' || true)
if [[ -n "$runtimes" ]]; then
    echo "test-all: robust-producer's normal dependencies include an async runtime:" >&2
    echo "$runtimes" >&2
    exit 1
fi
echo "none"

cargo test --workspace --release
