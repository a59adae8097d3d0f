#!/usr/bin/env bash
# receipts-run.sh LABEL BIN [BENCH-ARGS...]: a server of BIN on a fresh
# data directory (rate limits raised) and `tidings bench rooms` against
# it: 2,000 1:1 rooms at 1,000 msgs/s by default, each member marking its
# room read at most once a second as messages come (--read-every 1s), as
# an app showing the conversation does. Extra arguments go to the bench.
# PROF=1: a 10 s CPU profile of the server once the load runs, in
# /work/bench/LABEL.prof.
# TOOL: the binary whose bench runs (default BIN; --read-every needs
# one from 2026-12-04 on). Prints the bench's table; the JSON result goes to
# /work/bench/run/LABEL/result.json.
set -u
LABEL=$1; BIN=$2; shift 2
PORT=18422; DPORT=18432
OUT=/work/bench/run/$LABEL; rm -rf $OUT; mkdir -p $OUT
. "$(dirname "$0")/serve.sh"
start_server $BIN $OUT/data $OUT/server.log
KEY=$($BIN apps show --data $OUT/data default | sed -n 's/^server key: *//p')
if [ -n "${PROF:-}" ]; then
  ( until grep -q deliveries $OUT/bench.log 2>/dev/null; do sleep 0.5; done; sleep 8
    curl -s -o /work/bench/$LABEL.prof "http://127.0.0.1:$DPORT/debug/pprof/profile?seconds=10" ) &
fi
TIDINGS_SERVER_KEY=$KEY ${TOOL:-$BIN} bench rooms --url http://127.0.0.1:$PORT --server-pid $SPID \
  --rooms 2000 --members 2 --rate 1000 --read-every 1s --duration 20s --warmup 5s "$@" --json > $OUT/result.json 2> $OUT/bench.log
python3 - $OUT/result.json <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
l = r.get("latency") or {}
print(f'msgs/s {r.get("messagesPerSec",0):.0f}  p50 {l.get("p50Ms",l.get("p50",0))}  p90 {l.get("p90Ms",l.get("p90",0))}  p99 {l.get("p99Ms",l.get("p99",0))}  '
      f'cpu/msg {r.get("serverCpuPerMessageUs",0):.0f} us  receipts {r.get("readReceipts",0)} (failed {r.get("readReceiptErrors",0)})  lost {r.get("lost")}')
PY
