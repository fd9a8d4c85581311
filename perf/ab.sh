#!/usr/bin/env bash
# A/B of two broker builds on the same workloads, runs alternating between them so
# that the machine's drift falls on both alike. Each round starts a fresh broker
# (--cores 2, fresh data directory) per binary and runs, in order:
#   p1k    produce 1 KiB records, acks=1, 8 partitions, DURATION_S seconds
#   rate   produce 100 B records at RATE records/s (3 runs on one broker: the log
#          grows, as in BENCHMARKS.md's stall hunt), acknowledgement latency
#   e2e    produce-and-consume 100 B at RATE records/s, produce-to-consume latency
#
#   bash perf/ab.sh BIN_A BIN_B [rounds, default 3]     (a BIN is a sluice binary;
#                                                        the load generator is PERF)
# Prints one line per run: label, workload, MiB/s or rec/s, p50/p99/max ms.
set -euo pipefail
A=$1; B=$2; ROUNDS=${3:-3}
PERF=${PERF:-target/release/sluice-perf}
RATE=${RATE:-1330000}
DURATION_S=${DURATION_S:-8}
WORKLOADS=${WORKLOADS:-"p1k rate e2e"}
PORT=${PORT:-19592}
BOOT=127.0.0.1:$PORT
OUT=${OUT:-/tmp/ab-$$}
mkdir -p "$OUT"

pid=""
stop() { if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
trap stop EXIT
start() { # start BIN
    stop
    rm -rf "$OUT/data" && mkdir -p "$OUT/data"
    "$1" serve --override "listeners=PLAINTEXT://$BOOT" --override "log.dirs=$OUT/data" \
        --cores 2 > "$OUT/broker.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "ready on" "$OUT/broker.log" && return 0; sleep 0.1; done
    echo "broker did not start" >&2; cat "$OUT/broker.log" >&2; exit 1
}
show() { # show LABEL WORKLOAD JSON RESULT_INDEX
    python3 - "$@" <<'EOF'
import json, sys
label, work, path, i = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r = json.load(open(path))["results"][i]
l = r.get("latency") or {}
print(f"{label:>4} {work:<5} {r['mib_per_s']:8.1f} MiB/s {r['records_per_s']:11.0f} rec/s"
      f"  p50 {l.get('p50_ms', 0):7.2f}  p99 {l.get('p99_ms', 0):7.2f}  max {l.get('max_ms', 0):7.2f} ms")
EOF
}
echo "A=$A B=$B rounds=$ROUNDS rate=$RATE duration=${DURATION_S}s $(date -u +%FT%H:%MZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    for label in A B; do
        bin=$A; [ "$label" = B ] && bin=$B
        for work in $WORKLOADS; do
            start "$bin"
            case $work in
            p1k)
                "$PERF" produce --bootstrap-server "$BOOT" --topic p1k --record-size 1024 --partitions 8 \
                    --acks 1 --duration-s "$DURATION_S" --no-sink-check --quiet --json "$OUT/r.json" >/dev/null
                show "$label" p1k "$OUT/r.json" 0 ;;
            rate)
                for i in 1 2 3; do
                    "$PERF" produce --bootstrap-server "$BOOT" --topic rate --record-size 100 --partitions 8 \
                        --acks 1 --rate "$RATE" --duration-s "$DURATION_S" --no-sink-check --quiet --json "$OUT/r.json" >/dev/null
                    show "$label" "rate$i" "$OUT/r.json" 0
                done ;;
            e2e)
                "$PERF" e2e --bootstrap-server "$BOOT" --topic e2e --record-size 100 --partitions 8 \
                    --acks 1 --rate "$RATE" --duration-s "$DURATION_S" --no-sink-check --quiet --json "$OUT/r.json" >/dev/null
                show "$label" e2e "$OUT/r.json" 1 ;;
            esac
        done
    done
    echo "  round $round done, load $(cut -d' ' -f1-3 /proc/loadavg)"
done
stop
rm -rf "$OUT/data"
