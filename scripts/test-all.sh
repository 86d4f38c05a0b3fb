#!/usr/bin/env bash
# The whole test suite, on a fresh machine: unit, property, driver, mock
# scenario, librdkafka mock-cluster and real-Kafka integration tests, and
# doctests.
#
#   PROPTEST_CASES=N   cases per property (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --release
