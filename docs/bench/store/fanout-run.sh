#!/usr/bin/env bash
# fanout-run.sh LABEL BIN RATE NRUNS: 1,000 subscribers and one socket
# publisher (the peer tool's fanout1k and sat1k sets) against a Tidings
# server alone, on a fresh database, NRUNS runs of 15 s one after the
# other; a 10 s CPU profile in the last (/work/bench/LABEL.prof). RATE 0:
# saturation, window 20. Prints each run's deliveries a second and the
# server's CPU per delivery, its p50 and p99, and its commits in the run
# (count and mean, from /metrics). N: subscribers (1000). PBEXTRA: peerbench's flags (-publishers 4);
# EXTRA: the server's (--writers 1).
# Needs /work/peers-work/peerbench.
set -u
LABEL=$1; BIN=$2; RATE=$3; NRUNS=$4
PB=/work/peers-work/peerbench; PORT=18402; DPORT=18412
if [ "$RATE" = 0 ]; then RARGS="-rate 0 -window 20"; else RARGS="-rate $RATE"; fi
OUT=/work/bench/run/$LABEL; rm -rf $OUT; mkdir -p $OUT/data
. "$(dirname "$0")/serve.sh"
start_server $BIN $OUT/data $OUT/server.log ${EXTRA:-}
KEY=$(cat $OUT/data/default-server-key)
# commits: "count sum" of the store's commits so far.
commits() { curl -s http://127.0.0.1:$PORT/metrics | awk '/^tidings_store_commit_seconds_count/ {c=$2} /^tidings_store_commit_seconds_sum/ {s=$2} END {print c+0, s+0}'; }
for n in $(seq $NRUNS); do
  before=$(commits)
  CPID=
  if [ $n = $NRUNS ]; then (sleep 5; curl -s -o /work/bench/$LABEL.prof "http://127.0.0.1:$DPORT/debug/pprof/profile?seconds=10") & CPID=$!; fi
  TIDINGS_SERVER_KEY=$KEY $PB fanout -n ${N:-1000} -pub socket $RARGS ${PBEXTRA:-} -duration 15s -target tidings \
    -tidings.url http://127.0.0.1:$PORT -tidings.cache $OUT/cache.json -server-pid $SPID -label "$LABEL/$n" \
    -out /work/bench/results.jsonl > $OUT/run$n.log 2>&1
  [ -n "$CPID" ] && wait $CPID
  after=$(commits)
  tail -1 /work/bench/results.jsonl | COMMITS="$before $after" python3 -c 'import json,os,sys; d=json.loads(sys.stdin.read()); c0,s0,c1,s1=map(float,os.environ["COMMITS"].split()); print(d["label"], "deliveries_per_s=%d" % d["deliveries_per_s"], "server_cpu_pct=%s" % d["server_cpu_pct"], "server_us_per_delivery=%s" % d["server_us_per_delivery"], "tool_us_per_delivery=%s" % d["tool_us_per_delivery"], "p50_ms=%s" % d["p50_ms"], "p99_ms=%s" % d["p99_ms"], "commits=%d" % (c1-c0), "commit_ms_mean=%.2f" % ((s1-s0)*1000/max(c1-c0,1)), "lost=%s" % d["lost"])'
done
