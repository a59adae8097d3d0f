#!/usr/bin/env bash
# peer-order.sh LABEL BIN: the peer tool's 5-member cases in its order, on
# one server and a copy of the prepared rooms: two 15 s runs at 1,000
# msgs/s, then two at saturation (window 2). Needs the rooms prepared by
# warm-run.sh (2000 5) and /work/peers-work/peerbench.
set -u
LABEL=$1; BIN=$2
PB=/work/peers-work/peerbench; PORT=18402; DPORT=18412
PREP=/work/bench/shape-r2000m5
ARGS="-rooms 2000 -members 5 -room-prefix r2000m5-"
OUT=/work/bench/run/$LABEL; rm -rf $OUT; mkdir -p $OUT
cp -a $PREP/data $OUT/data; cp $PREP/cache.json $OUT/cache.json
. "$(dirname "$0")/serve.sh"
start_server $BIN $OUT/data $OUT/server.log
for n in 1 2 3 4; do
  if [ $n -le 2 ]; then RARGS="-rate 1000"; else RARGS="-rate 0 -window 2"; fi
  TIDINGS_SERVER_KEY=$(cat $PREP/key) $PB rooms $ARGS $RARGS -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $OUT/cache.json -server-pid $SPID -duration 15s -label "$LABEL/$n" -out /work/bench/results.jsonl > $OUT/run$n.log 2>&1
  curl -s -o $OUT/metrics$n.txt http://127.0.0.1:$PORT/metrics
  r=$(tail -1 $OUT/run$n.log | tr ' ' '\n' | grep -E '^(p99_ms|server_us_per_msg|other_cpu_pct|pub_per_s)=' | tr '\n' ' ')
  echo "$LABEL/$n $RARGS $r"
done
