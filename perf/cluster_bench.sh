#!/usr/bin/env bash
# Replicated produce on one machine: a ZooKeeper from Debian's package and three
# `sluice` brokers (--cores 1 each) on 127.0.0.1, a topic with replication factor 3,
# then sluice-perf produce with acks=all and acks=1, RUNS times each.
# Usage: bash perf/cluster_bench.sh [RUNS] [RECORD_SIZE]
# Needs: cargo build --release -p sluice -p sluice-perf; java and the zookeeper package.
set -euo pipefail
runs="${1:-3}"
size="${2:-100}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/release"
work="$(mktemp -d /tmp/sluice-cluster-bench.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

zk_port=22181
mkdir -p "$work/zk"
cat > "$work/zoo.cfg" <<CFG
tickTime=500
dataDir=$work/zk
clientPort=$zk_port
admin.enableServer=false
4lw.commands.whitelist=*
CFG
java -Xmx256m -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
    org.apache.zookeeper.server.ZooKeeperServerMain "$work/zoo.cfg" > "$work/zk.log" 2>&1 &
pids+=($!)
ruok() { exec 3<>/dev/tcp/127.0.0.1/$zk_port && echo srvr >&3 && timeout 2 cat <&3; exec 3>&-; }
for _ in $(seq 1 200); do ruok 2>/dev/null | grep -q Mode: && break; sleep 0.1; done

for id in 1 2 3; do
    port=$((29090 + id))
    "$bin/sluice" serve --cores 1 \
        --override broker.id=$id \
        --override listeners=PLAINTEXT://127.0.0.1:$port \
        --override log.dirs="$work/b$id" \
        --override zookeeper.connect=127.0.0.1:$zk_port/bench \
        > "$work/b$id.log" 2>&1 &
    pids+=($!)
done
for id in 1 2 3; do
    for _ in $(seq 1 300); do grep -q "ready on" "$work/b$id.log" && break; sleep 0.1; done
done
B=127.0.0.1:29091,127.0.0.1:29092,127.0.0.1:29093
"$bin/sluice" topics --bootstrap-server $B --create --topic rf3 --partitions 8 --replication-factor 3
"$bin/sluice" topics --bootstrap-server $B --describe --topic rf3
uptime
for acks in -1 1; do
    for i in $(seq 1 "$runs"); do
        echo "== acks=$acks run $i (record size $size) $(uptime)"
        "$bin/sluice-perf" produce --bootstrap-server 127.0.0.1:29091 --topic rf3 --record-size "$size" \
            --partitions 8 --acks=$acks --duration-s 10 --no-sink-check > "$work/perf.out" 2>&1 || { grep -m3 -B2 -A8 "panicked\|rror" "$work/perf.out"; exit 1; }; tail -4 "$work/perf.out"
    done
done
# The disk's reference in the same session: 16 KiB O_DIRECT writes into a preallocated
# file (every replica's bytes go to this one disk).
f="$work/fio.dat"
fio --name=pre --filename="$f" --size=1G --rw=write --bs=16k --direct=1 \
    --ioengine=io_uring --iodepth=32 --overwrite=1 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; print("fio O_DIRECT 16k qd32 preallocated: %.0f MiB/s" % (json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024))'
rm -f "$f"
