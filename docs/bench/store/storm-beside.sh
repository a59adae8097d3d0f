#!/usr/bin/env bash
# storm-beside.sh LABEL BIN: a reconnect storm beside a busy message
# journal. One server on a copy of the prepared 1:1 rooms (5,000 × 2),
# the peer tool's rooms at 2,000 msgs/s for 45 s (the journal then holds
# about 20,000 messages of others' conversations), and 12 s in, `tidings
# bench reconnect`: CLIENTS (default 2,000) members of one conversation
# drop and reconnect together after MISSED (20) messages at 5 a second,
# each resuming from 4 s back. Prints the storm's summary and the rooms'.
set -u
LABEL=$1; BIN=$2
PB=/work/peers-work/peerbench
PORT=18402; DPORT=18412
PREP=/work/bench/shape-r5000m2
ARGS="-rooms 5000 -members 2 -room-prefix r5000m2-"
OUT=/work/bench/run/$LABEL; rm -rf $OUT; mkdir -p $OUT
"$(dirname "$0")/prepare-rooms.sh" $BIN $PREP $PORT $ARGS
cp -a $PREP/data $OUT/data; cp $PREP/cache.json $OUT/cache.json
. "$(dirname "$0")/serve.sh"
start_server $BIN $OUT/data $OUT/server.log
( sleep 12; $BIN bench reconnect --url http://127.0.0.1:$PORT --key "$(cat $PREP/key)" --server-pid $SPID \
    --clients ${CLIENTS:-2000} --missed ${MISSED:-20} --rate 5 --run "$LABEL-$RANDOM" > $OUT/storm.log 2>&1 ) &
STORM=$!
TIDINGS_SERVER_KEY=$(cat $PREP/key) $PB rooms $ARGS -rate 2000 -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $OUT/cache.json -server-pid $SPID -duration 45s -label "$LABEL" -out /work/bench/results.jsonl > $OUT/run.log 2>&1
wait $STORM
cat $OUT/storm.log
tail -1 $OUT/run.log | tr ' ' '\n' | grep -E '^(p50_ms|p90_ms|p99_ms|server_us_per_msg|lost|pub_per_s)=' | tr '\n' ' '; echo
