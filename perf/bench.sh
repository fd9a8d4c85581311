#!/usr/bin/env bash
# Runs the figures of BENCHMARKS.md on this machine, each with the reference measured in
# the same session: fio (direct-I/O writes into preallocated and extending files on the
# disk holding the data directory) and iperf3 (one TCP stream over loopback).
#
#   cargo build --release -p sluice -p sluice-perf
#   bash perf/bench.sh [runs per figure, default 3] [shards, default 2]
#
# Needs fio and iperf3 (apt-get install fio iperf3). Results: JSON summaries and .hgrm
# files under target/bench/<date>/, and one line per run on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
CORES=${2:-2}
PORT=${PORT:-19092}
METRICS=127.0.0.1:$((PORT + 8))
OUT=target/bench/$(date -u +%Y%m%dT%H%M%SZ)
DATA=$OUT/data
SLUICE=target/release/sluice
PERF=target/release/sluice-perf
BOOT=127.0.0.1:$PORT
DURATION_S=${DURATION_S:-10}
mkdir -p "$OUT"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), broker --cores $CORES"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

broker_pid=""
start_broker() { # extra --override args
    stop_broker
    rm -rf "$DATA" && mkdir -p "$DATA"
    "$SLUICE" serve --override "listeners=PLAINTEXT://$BOOT" --override "log.dirs=$DATA" \
        --override "metrics.listener=$METRICS" --cores "$CORES" "$@" > "$OUT/broker.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 100); do
        grep -q "ready on" "$OUT/broker.log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "broker did not start" >&2; cat "$OUT/broker.log" >&2; exit 1
}
stop_broker() {
    if [ -n "$broker_pid" ]; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
        broker_pid=""
    fi
}
trap stop_broker EXIT
# Deletes a figure's topic once measured: a 10 s run at the disk's speed writes up to
# 10 GB, and the machine's disk is shared.
drop_topic() {
    "$SLUICE" topics --delete --topic "$1" --bootstrap-server "$BOOT" >/dev/null
}

# jq-free extraction of one summary field: json FILE INDEX FIELD [LATENCY_FIELD]
field() {
    python3 - "$@" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["results"][int(sys.argv[2])]
v = r[sys.argv[3]] if len(sys.argv) < 5 else (r["latency"] or {}).get(sys.argv[4])
print(f"{v:.3f}" if isinstance(v, float) else v)
EOF
}
# Segment writes slower than LIMIT seconds (a histogram bound: 0.005, 0.025) so far,
# all shards, from the broker's write-latency histogram: taken before and after each
# e2e run, so a stall can be told apart as the device's (slow writes) or not.
slow_writes() { # slow_writes LIMIT
    curl -s "http://$METRICS/metrics" | python3 -c '
import re, sys
total = over = 0.0
for line in sys.stdin:
    m = re.match(r"sluice_log_write_latency_seconds_bucket\{.*le=\"([^\"]+)\"\} (\S+)", line)
    if m and m.group(1) == "+Inf": total += float(m.group(2))
    if m and m.group(1) == sys.argv[1]: over -= float(m.group(2))
print(int(total + over))' "$1"
}
# One e2e run at the half-peak rate, with the machine's own hiccups measured beside it
# (`sluice-perf hiccup`: how late a thread sleeping 1 ms at a time wakes, the floor
# under any latency on this machine at that moment) and the device's slow writes.
e2e_run() { # e2e_run LABEL NAME DURATION_S WARMUP_S
    local label=$1 name=$2 duration=$3 warmup=$4 w5 w25
    w5=$(slow_writes 0.005)
    w25=$(slow_writes 0.025)
    "$PERF" hiccup --duration-s "$duration" --json "$OUT/$name-hiccup.json" --quiet >/dev/null &
    local hiccup=$!
    "$PERF" e2e --bootstrap-server "$BOOT" --topic "$name" --record-size 100 --partitions 8 --acks 1 \
        --rate "$HALF" --duration-s "$duration" --warmup-s "$warmup" --no-sink-check \
        --json "$OUT/$name.json" --hgrm "$OUT/$name.hgrm" --quiet >/dev/null
    wait "$hiccup"
    echo "$label: $(field "$OUT/$name.json" 1 records_per_s) rec/s; produce-to-consume p50 $(field "$OUT/$name.json" 1 latency p50_ms) p99 $(field "$OUT/$name.json" 1 latency p99_ms) p99.9 $(field "$OUT/$name.json" 1 latency p99.9_ms) max $(field "$OUT/$name.json" 1 latency max_ms) ms; ack p99 $(field "$OUT/$name.json" 0 latency p99_ms) ms; machine hiccups p99 $(field "$OUT/$name-hiccup.json" 0 latency p99_ms) p99.9 $(field "$OUT/$name-hiccup.json" 0 latency p99.9_ms) max $(field "$OUT/$name-hiccup.json" 0 latency max_ms) ms; segment writes over 5 ms: $(( $(slow_writes 0.005) - w5 )), over 25 ms: $(( $(slow_writes 0.025) - w25 ))"
    drop_topic "$name"
}
ceiling() {
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["tool_ceiling"]; print("%.0f rec/s" % c["records_per_s"] if c else "-")' "$1"
}

fio_one() { # fio_one BS QD [fio args...]: MiB/s of BS O_DIRECT sequential writes at queue depth QD into 1 GiB
    local f=$OUT/fio.dat bs=$1 qd=$2
    shift 2
    rm -f "$f"
    fio --name="w$bs" --filename="$f" --size=1G --rw=write --bs="$bs" --direct=1 \
        --ioengine=io_uring --iodepth="$qd" "$@" --output-format=json 2>/dev/null |
        python3 -c 'import json,sys; print("%.0f" % (json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024))'
    rm -f "$f"
}
fio_ref() { # the disk's reference: preallocated (fallocate, as the broker does), overwrite, extending
    echo "fio O_DIRECT 16k qd32: preallocated $(fio_one 16k 32 --fallocate=native) MiB/s," \
        "overwrite $(fio_one 16k 32 --overwrite=1) MiB/s, extending $(fio_one 16k 32 --fallocate=none) MiB/s;" \
        "128k qd8 (as 8 partitions with one write in flight each):" \
        "preallocated $(fio_one 128k 8 --fallocate=native) MiB/s"
}
# The device's write latency at the rate e2e writes: 16 KiB O_DIRECT writes (about one
# partition's batch at the half-peak rate) into preallocated space, 8 in flight (one per
# partition), paced to RATE records/s of 100 B records (~110 bytes each as stored). An
# acknowledgement, and so every e2e latency, waits for such a write.
fio_clat() { # fio_clat RATE
    local f=$OUT/fio.dat mib
    mib=$(python3 -c "print(max(1, round($1 * 110 / 1048576)))")
    rm -f "$f"
    fio --name=clat --filename="$f" --size=1G --rw=write --bs=16k --direct=1 --ioengine=io_uring \
        --iodepth=8 --fallocate=native --rate="${mib}m" --time_based --runtime=5 \
        --output-format=json 2>/dev/null |
        python3 -c 'import json,sys; w=json.load(sys.stdin)["jobs"][0]["write"]; p=w["clat_ns"]["percentile"]; print("fio O_DIRECT 16k qd8 at %d MiB/s (the e2e write rate), completion latency p50 %.3f p99 %.3f p99.9 %.3f max %.3f ms" % (int(sys.argv[1]), p["50.000000"]/1e6, p["99.000000"]/1e6, p["99.900000"]/1e6, w["clat_ns"]["max"]/1e6))' "$mib"
    rm -f "$f"
}
iperf_ref() {
    iperf3 -s -1 -p $((PORT + 7)) -D
    sleep 0.3
    iperf3 -c 127.0.0.1 -p $((PORT + 7)) -t 5 -J |
        python3 -c 'import json,sys; b=json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]; print("iperf3 loopback 1 stream: %.1f Gbit/s = %.0f MiB/s" % (b/1e9, b/8/1048576))'
}

echo "== references"
fio_ref
iperf_ref
"$PERF" hiccup --duration-s 10 --json "$OUT/hiccup-idle.json" --quiet >/dev/null
echo "machine hiccups, idle (sluice-perf hiccup, 10 s): p99 $(field "$OUT/hiccup-idle.json" 0 latency p99_ms) p99.9 $(field "$OUT/hiccup-idle.json" 0 latency p99.9_ms) max $(field "$OUT/hiccup-idle.json" 0 latency max_ms) ms"

echo "== sink ceiling (100 B records, 8 partitions, 1 connection, 5 in flight)"
for i in $(seq "$RUNS"); do
    "$PERF" sink --record-size 100 --partitions 8 --duration-s 5 --json "$OUT/sink-$i.json" --quiet >/dev/null
    echo "sink run $i: $(field "$OUT/sink-$i.json" 0 records_per_s) rec/s $(field "$OUT/sink-$i.json" 0 mib_per_s) MiB/s"
done

start_broker
echo "== produce 100 B, acks=1, 8 partitions, ${DURATION_S}s"
for i in $(seq "$RUNS"); do
    "$PERF" produce --bootstrap-server "$BOOT" --topic p100-$i --record-size 100 --partitions 8 \
        --acks 1 --duration-s "$DURATION_S" --json "$OUT/p100-$i.json" --hgrm "$OUT/p100-$i.hgrm" --quiet >/dev/null
    echo "p100 run $i: $(field "$OUT/p100-$i.json" 0 records_per_s) rec/s $(field "$OUT/p100-$i.json" 0 mib_per_s) MiB/s p99 $(field "$OUT/p100-$i.json" 0 latency p99_ms) ms; ceiling $(ceiling "$OUT/p100-$i.json")"
    drop_topic p100-$i
done

echo "== produce 1 KiB, acks=1, 8 partitions, ${DURATION_S}s (vs fio in this session)"
fio_ref
for i in $(seq "$RUNS"); do
    "$PERF" produce --bootstrap-server "$BOOT" --topic p1k-$i --record-size 1024 --partitions 8 \
        --acks 1 --duration-s "$DURATION_S" --json "$OUT/p1k-$i.json" --hgrm "$OUT/p1k-$i.hgrm" --quiet >/dev/null
    echo "p1k run $i: $(field "$OUT/p1k-$i.json" 0 records_per_s) rec/s $(field "$OUT/p1k-$i.json" 0 mib_per_s) MiB/s p99 $(field "$OUT/p1k-$i.json" 0 latency p99_ms) ms; ceiling $(ceiling "$OUT/p1k-$i.json")"
    [ "$i" -gt 1 ] && drop_topic p1k-$i  # the consume figure reads p1k-1
done

echo "== produce 1 KiB, acks=1, 8 partitions, larger batches (--batch-size 65536 and 262144: with the default 16 KiB and 5 requests in flight the tool is bound by latency)"
for kib in 64 256; do
    for i in $(seq "$RUNS"); do
        "$PERF" produce --bootstrap-server "$BOOT" --topic b$kib-$i --record-size 1024 --partitions 8 \
            --acks 1 --batch-size $((kib * 1024)) --duration-s "$DURATION_S" --no-sink-check --json "$OUT/b$kib-$i.json" --quiet >/dev/null
        echo "p1k/${kib}k run $i: $(field "$OUT/b$kib-$i.json" 0 records_per_s) rec/s $(field "$OUT/b$kib-$i.json" 0 mib_per_s) MiB/s p99 $(field "$OUT/b$kib-$i.json" 0 latency p99_ms) ms"
        drop_topic b$kib-$i
    done
done

echo "== produce 1 KiB, acks=1, 8 partitions, one batch per request (--partitions-per-request 1)"
for i in $(seq "$RUNS"); do
    "$PERF" produce --bootstrap-server "$BOOT" --topic q1k-$i --record-size 1024 --partitions 8 \
        --acks 1 --partitions-per-request 1 --duration-s "$DURATION_S" --no-sink-check --json "$OUT/q1k-$i.json" --quiet >/dev/null
    echo "p1k/1 run $i: $(field "$OUT/q1k-$i.json" 0 records_per_s) rec/s $(field "$OUT/q1k-$i.json" 0 mib_per_s) MiB/s p99 $(field "$OUT/q1k-$i.json" 0 latency p99_ms) ms"
    drop_topic q1k-$i
done

echo "== consume the 1 KiB backlog of p1k-1 from offset 0, $RUNS times (vs iperf3 in this session)"
iperf_ref
for i in $(seq "$RUNS"); do
    "$PERF" consume --bootstrap-server "$BOOT" --topic p1k-1 --json "$OUT/c1k-$i.json" --quiet >/dev/null
    echo "consume run $i: $(field "$OUT/c1k-$i.json" 0 records_per_s) rec/s $(field "$OUT/c1k-$i.json" 0 mib_per_s) MiB/s"
done

echo "== consume a 395 MiB backlog from memory: 400000 1 KiB records, read $((RUNS + 1)) times (the first read fills the read cache)"
"$PERF" produce --bootstrap-server "$BOOT" --topic mem --record-size 1024 --partitions 8 \
    --acks 1 --records 400000 --no-sink-check --json "$OUT/mem-produce.json" --quiet >/dev/null
for i in $(seq 0 "$RUNS"); do
    "$PERF" consume --bootstrap-server "$BOOT" --topic mem --json "$OUT/mem-$i.json" --quiet >/dev/null
    echo "memory consume read $i: $(field "$OUT/mem-$i.json" 0 records_per_s) rec/s $(field "$OUT/mem-$i.json" 0 mib_per_s) MiB/s"
done

# Half the median 100 B peak measured above.
PEAK=$(python3 -c 'import json,sys,statistics; print(statistics.median(json.load(open(f))["results"][0]["records_per_s"] for f in sys.argv[1:]))' "$OUT"/p100-*.json)
HALF=$(python3 -c "print(int($PEAK / 2))")
echo "== e2e 100 B at half the produce peak: --rate $HALF"
fio_clat "$HALF"
for i in $(seq "$RUNS"); do
    e2e_run "e2e run $i" "e2e-$i" "$DURATION_S" 0
done
echo "== e2e as above, steady state: the first 2 s of a $((DURATION_S + 2)) s run left out of the latencies (--warmup-s 2)"
for i in $(seq "$RUNS"); do
    e2e_run "e2e steady run $i" "e2w-$i" "$((DURATION_S + 2))" 2
done

echo "== e2e as above in a steady state with retention: 64 MiB segments, log.retention.bytes 128 MiB, retention checked every 500 ms; 16 s runs, the first 8 s left out (by then every partition has rolled and retention has run, so new segments are written over deleted ones)"
start_broker --override log.segment.bytes=67108864 --override log.retention.bytes=134217728 \
    --override log.retention.check.interval.ms=500
for i in $(seq "$RUNS"); do
    e2e_run "e2e retention run $i" "e2r-$i" 16 8
done

start_broker --override log.flush.interval.messages=1
echo "== durable (log.flush.interval.messages=1): produce 1 KiB, acks=1, 8 partitions"
for i in $(seq "$RUNS"); do
    "$PERF" produce --bootstrap-server "$BOOT" --topic d1k-$i --record-size 1024 --partitions 8 \
        --acks 1 --duration-s "$DURATION_S" --no-sink-check --json "$OUT/d1k-$i.json" --hgrm "$OUT/d1k-$i.hgrm" --quiet >/dev/null
    echo "durable run $i: $(field "$OUT/d1k-$i.json" 0 records_per_s) rec/s $(field "$OUT/d1k-$i.json" 0 mib_per_s) MiB/s p99 $(field "$OUT/d1k-$i.json" 0 latency p99_ms) ms"
    drop_topic d1k-$i
done
stop_broker
rm -rf "$DATA"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "results in $OUT"
