#!/usr/bin/env bash
# connect-run.sh LABEL BIN: 10,000 connects (the peer tool's idle set) to a Tidings server
# alone, on a copy of prepared users and rooms (made once, in
# /work/bench/idle/prep), with a 4 s CPU profile over them
# (/work/bench/LABEL.prof); prints the connect rate and the server's CPU
# meanwhile. Needs /work/peers-work/peerbench.
set -u
LABEL=$1; BIN=$2
PB=/work/peers-work/peerbench; PORT=18402; DPORT=18412
PREP=/work/bench/idle/prep
. "$(dirname "$0")/serve.sh"
if [ ! -d $PREP ]; then
  mkdir -p $PREP/data
  $BIN serve --data $PREP/data --addr 127.0.0.1:$PORT $BENCH_FLAGS > $PREP/server.log 2>&1 &
  P=$!; wait_port $PORT
  cat $PREP/data/default-server-key > $PREP/key
  TIDINGS_SERVER_KEY=$(cat $PREP/key) $PB idle -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $PREP/cache.json -server-pid $P -c 10000 -room-prefix idle- -prepare-only > $PREP/prepare.log 2>&1
  kill $P; wait $P
fi
OUT=/work/bench/run/$LABEL; rm -rf $OUT; mkdir -p $OUT; cp -a $PREP/data $OUT/data; cp $PREP/cache.json $OUT/
start_server $BIN $OUT/data $OUT/server.log
(curl -s -o /work/bench/$LABEL.prof "http://127.0.0.1:$DPORT/debug/pprof/profile?seconds=4") &
TIDINGS_SERVER_KEY=$(cat $PREP/key) $PB idle -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $OUT/cache.json -server-pid $SPID -c 10000 -room-prefix idle- -hold 5s > $OUT/run.log 2>&1
sleep 1
tail -1 $OUT/run.log | tr ' ' '\n' | grep -E '^(connects_per_s|connect_server_cpu_pct|connect_s|kib_per_conn)=' | tr '\n' ' '; echo
