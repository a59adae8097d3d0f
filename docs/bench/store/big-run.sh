#!/usr/bin/env bash
# big-run.sh LABEL DATA RATE NRUNS: a server on the data directory DATA
# itself (not a copy: a filled one is gigabytes), then NRUNS peerbench
# runs of the 2,000 rooms × 5 of /work/bench/shape-r2000m5 (prepared by
# warm-run.sh), one after the other. Prints how long the server took to
# listen and to read its stored client ids, each run's summary, the
# server's resident memory and what it read from the disk in the run
# (not from the page cache). RATE 0: saturation, window 2. BIN: the
# server's binary. The room set is in docs/benchmarks.md, "Ten million
# messages again", with the fill that makes DATA.
set -u
LABEL=$1; DATA=$2; RATE=$3; NRUNS=$4
PB=/work/peers-work/peerbench; BIN=${BIN:-/work/bench/head}
PORT=18402; DPORT=18412; PREP=/work/bench/shape-r2000m5
if [ "$RATE" = 0 ]; then RARGS="-rate 0 -window 2"; else RARGS="-rate $RATE"; fi
ARGS="-rooms 2000 -members 5 -room-prefix r2000m5-"
OUT=/work/bench/run/$LABEL; mkdir -p $OUT
T0=$(date +%s.%N)
. "$(dirname "$0")/serve.sh"
WAIT_TRIES=300 start_server $BIN $DATA $OUT/server.log --log-level debug
echo "$LABEL listening after $(echo "$(date +%s.%N) - $T0" | bc) s"
for i in $(seq 600); do grep -q 'read the client ids' $OUT/server.log && break; sleep 0.1; done
grep 'read the client ids' $OUT/server.log | head -1
for n in $(seq $NRUNS); do
  RB0=$(awk '/^read_bytes/{print $2}' /proc/$SPID/io)
  TIDINGS_SERVER_KEY=$(cat $PREP/key) $PB rooms $ARGS $RARGS -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $PREP/cache.json -server-pid $SPID -duration ${DUR:-25s} -label "$LABEL/$n" -out /work/bench/results.jsonl > $OUT/run$n.log 2>&1
  r=$(tail -1 $OUT/run$n.log | tr ' ' '\n' | grep -E '^(p50_ms|p90_ms|p99_ms|server_us_per_msg|other_cpu_pct|lost|dup|pub_per_s|server_writes_per_delivery)=' | tr '\n' ' ')
  curl -s -o $OUT/metrics$n.txt http://127.0.0.1:$PORT/metrics
  RB1=$(awk '/^read_bytes/{print $2}' /proc/$SPID/io)
  echo "$LABEL/$n $r rss_mb=$(( $(awk '/VmRSS/{print $2}' /proc/$SPID/status) / 1024 )) disk_read_mb=$(( (RB1 - RB0) >> 20 ))"
done

