#!/usr/bin/env bash
# Compares two builds of the rdkafka throughput bench by running them
# alternately (A, B, A, B, ...), so that drift in the machine's speed, which
# on a shared VM reaches a third within minutes, hits both alike.
#
#   cargo bench -p robust-producer-rdkafka --bench throughput --no-run
#   cp target/release/deps/throughput-<hash> /tmp/bench-a   # then change code, rebuild
#   cp target/release/deps/throughput-<hash> /tmp/bench-b
#   bash scripts/bench-ab.sh /tmp/bench-a /tmp/bench-b 4
#
# Each run: raw BaseProducer and ours (current-thread), 2 rounds of 500k
# records. Prints every round, then per binary the median ratio to raw and
# the median CPU per record of the application thread (ours and raw).
set -euo pipefail

a=${1:?usage: bench-ab.sh BENCH_A BENCH_B [REPETITIONS]}
b=${2:?usage: bench-ab.sh BENCH_A BENCH_B [REPETITIONS]}
reps=${3:-4}

lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for _ in $(seq "$reps"); do
    for bin in "$a" "$b"; do
        "$bin" --rounds 2 --records 500000 --backlog 0 --variants raw,ours --threads \
            | grep '^round' | sed "s|^|$bin: |" | tee -a "$lines"
    done
done

# Per line: "BIN: round N:  raw R/s C (NAME CPU, ...)  ours O/s C (NAME CPU, ...)".
# The application thread is named after the binary (first 15 characters):
# its CPU is the figure after that name in each parenthesis.
awk '
function median(s,   n, v, i, j, t) {
    n = split(s, v, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{
    bin = $1; sub(/:$/, "", bin)
    name = bin; sub(/.*\//, "", name); name = substr(name, 1, 15)
    raw = ""; ours = ""; app_raw = ""; app_ours = ""
    for (i = 2; i <= NF; i++) {
        if ($i == "raw") { raw = $(i + 1) + 0; part = "raw" }
        if ($i == "ours") { ours = $(i + 1) + 0; part = "ours" }
        if ($i == "(" name) { v = $(i + 1) + 0; if (part == "raw") app_raw = v; else app_ours = v }
    }
    if (raw > 0 && ours > 0) {
        ratio[bin] = ratio[bin] " " ours / raw
        cpu_raw[bin] = cpu_raw[bin] " " app_raw
        cpu_ours[bin] = cpu_ours[bin] " " app_ours
    }
}
END {
    for (bin in ratio)
        printf "%s: ratio to raw, median %.2f; application thread us/record, median: ours %.2f, raw %.2f\n",
            bin, median(ratio[bin]), median(cpu_ours[bin]), median(cpu_raw[bin])
}' "$lines"
