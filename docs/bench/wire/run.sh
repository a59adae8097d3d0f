#!/usr/bin/env bash
# run.sh BIN LABEL RATE: one fanout run of 1,000 subscribers against a fresh
# Tidings on 127.0.0.1:18800; samples the server sockets' bytes_sent.
set -u
OUT=${OUT:-/tmp/wire-runs}; mkdir -p "$OUT"
BIN=$1 LABEL=$2 RATE=$3
PORT=18800
DATA=/tmp/wire-data-$LABEL
rm -rf "$DATA"
ulimit -n "$(ulimit -Hn)"
env -u TIDINGS_SERVER_KEY "$BIN" serve --data "$DATA" --addr 127.0.0.1:$PORT --command-rate 1000000 --user-rate 0 \
  --conversation-rate 0 --participant-rate 0 --log-level warn > $OUT/$LABEL.server.log 2>&1 &
SPID=$!
for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
KEY=$("$BIN" apps show --data "$DATA" default | awk '/tsk_/ {for (i=1;i<=NF;i++) if ($i ~ /^tsk_/) print $i}' | head -1)
sent() { ss -tniH state established "( sport = :$PORT )" | grep -o 'bytes_sent:[0-9]*' | awk -F: '{s+=$2} END {print s+0}'; }
(
  sleep 9; a=$(sent); t0=$(date +%s.%N); sleep 6; b=$(sent); t1=$(date +%s.%N)
  echo "SOCKBYTES $a $b $t0 $t1" > $OUT/$LABEL.bytes
) &
BPID=$!
TIDINGS_SERVER_KEY=$KEY timeout 120 /work/peers-work/peerbench fanout -target tidings -tidings.url http://127.0.0.1:$PORT \
  -server-pid $SPID -n 1000 -pub socket -rate "$RATE" -duration 15s -label "$LABEL" -out $OUT/results.jsonl \
  > $OUT/$LABEL.out 2> $OUT/$LABEL.err
wait $BPID
kill $SPID; wait $SPID 2>/dev/null
grep RESULT $OUT/$LABEL.out | tr ' ' '\n' | grep -E "deliveries_per_s|server_us_per_delivery|server_cpu_pct|lost|p50|p99=|other_cpu|writes_per" | tr '\n' ' '; echo
cat $OUT/$LABEL.bytes
