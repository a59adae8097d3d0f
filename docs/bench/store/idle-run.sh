#!/usr/bin/env bash
# idle-run.sh LABEL BIN C: C idle connections (the peer tool's idle set:
# one user and one room each, held 45 s) against a Tidings server alone,
# freshly started on rooms prepared once (/work/bench/idle/data, 19,000);
# a 30 s CPU profile during the hold (/work/bench/LABEL.prof). Prints the
# tool's memory, idle CPU and connect figures. EXTRA: the server's flags.
# Needs /work/peers-work/peerbench.
set -u
LABEL=$1; BIN=$2; C=$3
PB=/work/peers-work/peerbench; PORT=18502; DPORT=18512
D=/work/bench/idle/data
. "$(dirname "$0")/serve.sh"
ulimit -n 20000
mkdir -p /work/bench/idle
if [ ! -f $D/key ]; then
  mkdir -p $D
  DPORT= start_server $BIN $D/tidings /work/bench/idle/$LABEL-server.log
  $BIN apps show --data $D/tidings default | sed -n 's/^server key: *//p' > $D/key
  TIDINGS_SERVER_KEY=$(cat $D/key) $PB idle -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $D/cache.json \
    -server-pid $SPID -c 19000 -room-prefix idle- -prepare-only > /work/bench/idle/prepare.log 2>&1
  kill $SPID; wait $SPID
fi
start_server $BIN $D/tidings /work/bench/idle/$LABEL-server.log ${EXTRA:-}
(sleep 12; curl -s -o /work/bench/$LABEL.prof "http://127.0.0.1:$DPORT/debug/pprof/profile?seconds=30") & CPID=$!
TIDINGS_SERVER_KEY=$(cat $D/key) $PB idle -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $D/cache.json \
  -server-pid $SPID -c $C -room-prefix idle- -hold 45s > /work/bench/idle/$LABEL.log 2>&1
wait $CPID
tail -1 /work/bench/idle/$LABEL.log | tr ' ' '\n' | grep -E '^(kib_per_conn|idle_server_cpu_pct|dropped|connects_per_s|connect_server_cpu_pct)=' | tr '\n' ' '; echo
