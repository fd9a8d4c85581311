#!/usr/bin/env bash
# Consume after a restart (BENCHMARKS.md, "Read cache"): produce RECORDS (default 400000)
# 1 KiB records on 8 partitions, restart the broker (cold cache), consume 3 times.
#   bash perf/consume_after_restart.sh BINDIR LABEL [--override k=v ...]
set -u
BIN=$1; LABEL=$2; shift 2
PORT=19792
D=/tmp/pcold-data-$$; rm -rf $D
start() { $BIN/sluice serve --override listeners=PLAINTEXT://127.0.0.1:$PORT --override log.dirs=$D --cores 2 "$@" >/tmp/pcold.out 2>/tmp/pcold.err & PID=$!; for i in $(seq 100); do grep -q ready /tmp/pcold.out && break; sleep 0.1; done; }
start "$@"
echo "$LABEL $(date -u +%H:%M:%SZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
$BIN/sluice-perf produce --bootstrap-server 127.0.0.1:$PORT --topic ab --record-size 1024 --partitions 8 --acks 1 --records ${RECORDS:-400000} --no-sink-check --quiet > /dev/null 2>&1
kill -TERM $PID; wait $PID
start "$@"
for r in 1 2 3; do
  $BIN/sluice-perf consume --bootstrap-server 127.0.0.1:$PORT --topic ab --json /tmp/pcold-c.json --quiet >/dev/null 2>&1
  python3 -c 'import json; r=json.load(open("/tmp/pcold-c.json"))["results"][0]; print("  consume after restart %.0f MiB/s %d records" % (r["mib_per_s"], r.get("records",0)))'
done
echo "  load after $(cut -d' ' -f1-3 /proc/loadavg)"
kill -TERM $PID; wait $PID
rm -rf $D
