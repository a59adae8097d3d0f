#!/usr/bin/env bash
# ab-run.sh LABEL BIN [ENV...] : one 2k-rooms run on a copy of prepared data; prints a summary line
set -u
LABEL=$1; BIN=$2; shift 2
PB=/work/peers-work/peerbench
PORT=18512; DPORT=18513
PREP=/work/bench/prep-r2k5
ARGS="-rooms 2000 -members 5 -room-prefix r2k5- ${AB_ARGS:--rate 1000}"
OUT=/work/bench/ab/$LABEL; rm -rf $OUT; mkdir -p $OUT
"$(dirname "$0")/prepare-rooms.sh" $BIN $PREP $PORT $ARGS
cp -a $PREP/data $OUT/data; cp $PREP/cache.json $OUT/cache.json
. "$(dirname "$0")/serve.sh"
SENV="$*" start_server $BIN $OUT/data $OUT/server.log
TIDINGS_SERVER_KEY=$(cat $PREP/key) $PB rooms $ARGS -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $OUT/cache.json -server-pid $SPID -duration ${DUR:-20s} > $OUT/run.log 2>&1
r=$(tail -1 $OUT/run.log | tr ' ' '\n' | grep -E "^(p50_ms|p99_ms|server_us_per_msg|other_cpu_pct|lost|dup|pub_per_s|server_writes_per_delivery|server_rss_mib)=" | tr '\n' ' ')
echo "$LABEL $r"
