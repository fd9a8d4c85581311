#!/usr/bin/env bash
# Consume-from-memory figure of BENCHMARKS.md ("Read cache"): start a broker (--cores 2),
# produce RECORDS (default 400000) 1 KiB records on 8 partitions, consume them 5 times
# from offset 0. Prints produce and consume MiB/s and the load average.
#   bash perf/consume_backlog.sh BINDIR LABEL [--override k=v ...]   (BINDIR: target/release)
set -u
BIN=$1; LABEL=$2; shift 2
PORT=19492
D=/tmp/pc-data-$$; rm -rf $D
$BIN/sluice serve --override listeners=PLAINTEXT://127.0.0.1:$PORT --override log.dirs=$D --cores 2 "$@" >/tmp/pc.out 2>/tmp/pc.err &
PID=$!
for i in $(seq 100); do grep -q ready /tmp/pc.out && break; sleep 0.1; done
echo "$LABEL $(date -u +%H:%M:%SZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
$BIN/sluice-perf produce --bootstrap-server 127.0.0.1:$PORT --topic ab --record-size 1024 --partitions 8 --acks 1 --records ${RECORDS:-400000} --no-sink-check --quiet --json /tmp/pc-prod.json > /dev/null 2>&1
python3 -c 'import json; r=json.load(open("/tmp/pc-prod.json"))["results"][0]; print("  produce %.0f MiB/s" % r["mib_per_s"])'
for r in 1 2 3 4 5; do
  $BIN/sluice-perf consume --bootstrap-server 127.0.0.1:$PORT --topic ab --json /tmp/pc-c.json --quiet >/dev/null 2>&1
  python3 -c 'import json; r=json.load(open("/tmp/pc-c.json"))["results"][0]; print("  consume %.0f MiB/s %.0f rec/s %d records" % (r["mib_per_s"], r["records_per_s"], r.get("records",0)))'
done
echo "  load after $(cut -d' ' -f1-3 /proc/loadavg)"
kill -TERM $PID; wait $PID
rm -rf $D
