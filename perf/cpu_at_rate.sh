#!/usr/bin/env bash
# The broker's CPU time at a fixed load: a fresh broker (--cores 2), 100 B records
# produced at RATE records/s (acks=1, 8 partitions) for 8 s; `perf stat -e task-clock`
# counts the broker's CPU over 5 s in the middle. At a fixed rate, CPU seconds compare
# builds more steadily than peak throughput does on a shared machine.
#
#   bash perf/cpu_at_rate.sh SLUICE_BIN LABEL      (PERF: load generator binary)
# Prints: LABEL, broker CPU seconds per 5 s, acknowledgement p50 and p99.
# Needs `perf` (Debian: linux-perf).
set -euo pipefail
BIN=$1; LABEL=$2
PERF=${PERF:-target/release/sluice-perf}
RATE=${RATE:-1330000}
PORT=${PORT:-19701}
D=$(mktemp -d)
"$BIN" serve --override "listeners=PLAINTEXT://127.0.0.1:$PORT" --override "log.dirs=$D" \
    --cores 2 > "$D.log" 2>&1 &
BP=$!
trap 'kill -TERM $BP 2>/dev/null; wait $BP 2>/dev/null; rm -rf "$D" "$D.log" "$D.json"' EXIT
for _ in $(seq 100); do grep -q "ready on" "$D.log" && break; sleep 0.1; done
"$PERF" produce --bootstrap-server "127.0.0.1:$PORT" --topic cpu --record-size 100 --partitions 8 \
    --acks 1 --rate "$RATE" --duration-s 8 --no-sink-check --quiet --json "$D.json" > /dev/null &
TP=$!
sleep 2
CPU_MS=$(perf stat -e task-clock -p "$BP" -x, -- sleep 5 2>&1 | grep task-clock | cut -d, -f1)
wait "$TP"
python3 - "$LABEL" "$CPU_MS" "$D.json" <<'EOF'
import json, sys
label, cpu_ms, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
r = json.load(open(path))["results"][0]
l = r["latency"]
print(f"{label}: broker CPU {cpu_ms / 1000:.2f} s per 5 s at {r['records_per_s']:.0f} rec/s;"
      f" ack p50 {l['p50_ms']:.2f} p99 {l['p99_ms']:.2f} ms")
EOF
