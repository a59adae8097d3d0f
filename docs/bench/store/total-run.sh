#!/usr/bin/env bash
# total-run.sh LABEL BIN ROOMS MEMBERS RATE: one server on a copy of
# prepared rooms, one peerbench run of DUR (default 60s) against it, then
# SETTLE seconds (default 5) of nothing; prints the run's summary and the
# server's CPU per message over the run *and* the settle, which takes in
# the work the server does after the tool stopped (the writer's idle job
# moves what the journal still held): a longer move delay leaves more of
# its moves to after a run, which the tool's own figure does not count.
# The CPU counted includes the tool's connect phase (10,000 auths), the
# same for every build: compare within a session.
# SENV: the server's environment; EXTRA: its flags.
set -u
LABEL=$1; BIN=$2; ROOMS=$3; MEMBERS=$4; RATE=$5
PB=/work/peers-work/peerbench
PORT=18402; DPORT=18412
PREP=/work/bench/shape-r${ROOMS}m${MEMBERS}
ARGS="-rooms $ROOMS -members $MEMBERS -room-prefix r${ROOMS}m${MEMBERS}-"
OUT=/work/bench/run/$LABEL; rm -rf $OUT; mkdir -p $OUT
"$(dirname "$0")/prepare-rooms.sh" $BIN $PREP $PORT $ARGS
cp -a $PREP/data $OUT/data; cp $PREP/cache.json $OUT/cache.json
. "$(dirname "$0")/serve.sh"
start_server $BIN $OUT/data $OUT/server.log ${EXTRA:-}
ticks() { awk '{print $14+$15}' /proc/$SPID/stat; }
t0=$(ticks)
TIDINGS_SERVER_KEY=$(cat $PREP/key) $PB rooms $ARGS -rate $RATE -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $OUT/cache.json -server-pid $SPID -duration ${DUR:-60s} -label "$LABEL" -out /work/bench/results.jsonl > $OUT/run.log 2>&1
sleep ${SETTLE:-5}
t1=$(ticks)
curl -s -o $OUT/metrics.txt http://127.0.0.1:$PORT/metrics
r=$(tail -1 $OUT/run.log | tr ' ' '\n' | grep -E '^(p50_ms|p90_ms|p99_ms|server_us_per_msg|other_cpu_pct|lost|pub_per_s|server_writes_per_delivery|published)=' | tr '\n' ' ')
sent=$(tail -1 $OUT/run.log | tr ' ' '\n' | grep -E '^published=' | cut -d= -f2)
moved=$(grep '^tidings_store_journal_moved_total' $OUT/metrics.txt | tr '\n' ' ')
echo "$LABEL $r total_us_per_msg=$(echo "($t1-$t0)*10000/${sent:-1}" | bc) $moved"
