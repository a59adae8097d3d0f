#!/usr/bin/env bash
# runcf.sh LABEL RATE: the same fanout run against Centrifugo v6.9.1 on 127.0.0.1:18801.
set -u
OUT=${OUT:-/tmp/wire-runs}; mkdir -p "$OUT"
LABEL=$1 RATE=$2 PORT=18801
ulimit -n "$(ulimit -Hn)"
# /tmp/wire-cf/config.json: /work/peers-work/cf/config.json with port 18801
(cd /tmp/wire-cf && exec /work/peers-work/bin/centrifugo --config config.json) > $OUT/$LABEL.server.log 2>&1 &
SPID=$!
for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
sent() { ss -tniH state established "( sport = :$PORT )" | grep -o 'bytes_sent:[0-9]*' | awk -F: '{s+=$2} END {print s+0}'; }
(
  sleep 9; a=$(sent); t0=$(date +%s.%N); sleep 6; b=$(sent); t1=$(date +%s.%N)
  echo "SOCKBYTES $a $b $t0 $t1" > $OUT/$LABEL.bytes
) &
BPID=$!
timeout 120 /work/peers-work/peerbench fanout -target centrifugo -centrifugo.ws ws://127.0.0.1:$PORT/connection/websocket \
  -centrifugo.api http://127.0.0.1:$PORT/api -centrifugo.origin http://127.0.0.1:$PORT \
  -server-pid $SPID -n 1000 -pub socket -rate "$RATE" -duration 15s -label "$LABEL" -out $OUT/results.jsonl \
  > $OUT/$LABEL.out 2> $OUT/$LABEL.err
wait $BPID
kill $SPID; wait $SPID 2>/dev/null
grep RESULT $OUT/$LABEL.out | tr ' ' '\n' | grep -E "deliveries_per_s|server_us_per_delivery|server_cpu_pct|lost|p50|other_cpu|writes_per" | tr '\n' ' '; echo
cat $OUT/$LABEL.bytes
