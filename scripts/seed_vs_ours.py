"""The original design's send path against ours, on the same real broker.

The seed (../shared/seeds/): kafka-python's KafkaProducer with a JSON value
serializer, and for every event `send(...)` then `future.get(timeout=10)`,
with the seed's event envelope. Ours: the `seed_compare` example (Rust,
`Producer::send_event` over the rdkafka transport, then `flush`). Each
sends for about `--seconds` (default 60) and is reported as events
acknowledged per second; the ratio is ours / seed.

    python scripts/seed_vs_ours.py --bootstrap 127.0.0.1:9092 --ours target/release/examples/seed_compare
"""

import argparse
import json
import subprocess
import time
import uuid
from datetime import datetime, timezone

from kafka import KafkaProducer


def envelope(event_type, payload, producer):
    """The seed's EventSchema.to_dict()."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "producer": producer,
        "version": "1.0",
        "payload": payload,
    }


def seed(bootstrap, seconds, topic):
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        value_serializer=lambda v: json.dumps(v).encode("utf-8"),
        max_block_ms=10000,
        request_timeout_ms=30000,
    )
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        event = envelope("patient.registered", {"patient_id": sent}, "patient-service")
        key = f"patient-{sent % 1000}".encode("utf-8")
        producer.send(topic, value=event, key=key).get(timeout=10)
        sent += 1
    elapsed = time.monotonic() - start
    producer.close()
    return sent, elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--ours", required=True, help="the seed_compare example binary")
    parser.add_argument("--seconds", type=float, default=60.0)
    args, _ = parser.parse_known_args()
    topic = f"seed-{uuid.uuid4().hex[:8]}"
    n, elapsed = seed(args.bootstrap, args.seconds, topic + "-seed")
    seed_rate = n / elapsed
    out = subprocess.run(
        [args.ours, "--bootstrap", args.bootstrap, "--seconds", str(args.seconds),
         "--topic", topic + "-ours"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    ours_n, ours_elapsed = int(out[0]), float(out[1])
    ours_rate = ours_n / ours_elapsed
    print(f"the seed's algorithm (kafka-python, send().get() per event): "
          f"{n} events in {elapsed:.1f} s = {seed_rate:.0f} events/s")
    print(f"ours (send_event, then flush): "
          f"{ours_n} events in {ours_elapsed:.1f} s = {ours_rate:.0f} events/s")
    print(f"ratio ours / seed: {ours_rate / seed_rate:.0f}")


if __name__ == "__main__":
    main()
