#!/usr/bin/env bash
# Smoke test of the Kafka image with a host-side client (kcat, from Debian):
# publish a fixed host port, wait for "Kafka Server started", produce and
# consume, then docker stop/start and pause/unpause and check the records are
# all still there on the same port. Prints the start-up times.
# Usage: tests/kafka-image/smoke-test.sh [host-port]   (image: $KAFKA_IMAGE)
set -euo pipefail

IMAGE="${KAFKA_IMAGE:-robust-producer/kafka:4.4.0}"
PORT="${1:-19092}"
NAME="robust-producer-kafka-smoke-$$"
BS="127.0.0.1:$PORT"
N=1000

say() { echo "[smoke] $*"; }
die() { echo "[smoke] FAILED: $*" >&2; docker logs --tail 30 "$NAME" >&2 2>/dev/null || true; exit 1; }
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT

command -v kcat >/dev/null 2>&1 || {
    say "installing kcat (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q kcat >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q kcat >/dev/null; } \
        || die "kcat is missing and could not be installed"
}
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found: run tests/kafka-image/prepare.sh"

ms() { date +%s%3N; }
wait_started() { # nth occurrence of the ready line; prints elapsed ms
    local n=$1 t0; t0=$(ms)
    for _ in $(seq 1 1200); do
        [ "$(docker logs "$NAME" 2>&1 | grep -c 'Kafka Server started')" -ge "$n" ] && { echo $(( $(ms) - t0 )); return 0; }
        [ "$(docker inspect -f '{{.State.Running}}' "$NAME")" = true ] || return 1
        sleep 0.1
    done
    return 1
}
count() { # records in topic $1
    kcat -b "$BS" -C -t "$1" -e -q -f '%k:%s\n' 2>/dev/null | wc -l
}
produce() { # topic, first id, count
    seq "$2" $(( $2 + $3 - 1 )) | awk '{print "k" ($1 % 7) ":" $1}' \
        | kcat -b "$BS" -P -t "$1" -K: -X enable.idempotence=true -X acks=all 2>/dev/null
}
check_order() { # every key's ids strictly increasing, all ids 0..n-1 present once
    kcat -b "$BS" -C -t "$1" -e -q -f '%k %s\n' 2>/dev/null | awk -v n="$2" '
        { if (($1 in last) && $2 <= last[$1]) bad++; last[$1] = $2; if (seen[$2]++) dup++; c++ }
        END { for (i = 0; i < n; i++) if (!(i in seen)) miss++;
              printf "%d records, %d missing, %d duplicated, %d out of order per key\n", c, miss, dup, bad;
              exit (miss || dup || bad) ? 1 : 0 }'
}

t0=$(ms)
docker run -d --name "$NAME" -p "127.0.0.1:$PORT:9092" \
    -e KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://$BS" "$IMAGE" >/dev/null
t=$(wait_started 1) || die "broker did not start"
say "fresh container: 'Kafka Server started' after $(( $(ms) - t0 )) ms (docker run included; wait $t ms)"

produce smoke 0 "$N" || die "produce failed"
check_order smoke "$N" >/dev/null || die "records missing after produce"
say "produced and consumed $N records on $BS: $(check_order smoke "$N")"

t0=$(ms); docker stop "$NAME" >/dev/null; say "docker stop took $(( $(ms) - t0 )) ms"
if kcat -b "$BS" -L -m 2 >/dev/null 2>&1; then die "broker still answers while stopped"; fi
t0=$(ms); docker start "$NAME" >/dev/null
wait_started 2 >/dev/null || die "broker did not restart"
say "restart: 'Kafka Server started' after $(( $(ms) - t0 )) ms, port $(docker port "$NAME" 9092)"
check_order smoke "$N" >/dev/null || die "records lost across stop/start"
produce smoke "$N" "$N" || die "produce after restart failed"
say "after stop/start: $(check_order smoke $((2 * N)))" || die "order check after restart"

docker pause "$NAME" >/dev/null
if kcat -b "$BS" -L -m 3 >/dev/null 2>&1; then die "broker answered while paused"; fi
say "paused: metadata request timed out (blackhole), as expected"
docker unpause "$NAME" >/dev/null
produce smoke $((2 * N)) "$N" || die "produce after unpause failed"
check_order smoke $((3 * N)) >/dev/null || die "records wrong after pause/unpause"
say "after pause/unpause: $(check_order smoke $((3 * N)))"
say "OK"
