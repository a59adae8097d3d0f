#!/usr/bin/env bash
# warm-run.sh LABEL BIN ROOMS MEMBERS RATE NRUNS: one server on a copy of
# prepared rooms, NRUNS peerbench runs against it one after the other (a
# server that has run a while: its page cache full), a 15 s CPU profile
# in the last; prints each run's summary. RATE 0: saturation, window 2.
# SENV: the server's environment; EXTRA: its flags; PBEXTRA: peerbench's.
# PROFALL=1: a profile in every run (LABEL-N.prof), to compare them.
# Each run's /metrics is kept beside its log ($OUT/metricsN.txt).
# PERFSTAT=1: perf stat's count of the server's system calls and context
# switches over the profile's 15 s ($OUT/perfN.txt).
# Each run's line ends with alloc_kib_per_msg: the server's heap
# allocations over the run (connects included), per message sent.
# Needs /work/peers-work/peerbench (see docs/benchmarks.md, "The peer
# tool and the rate limits").
set -u
LABEL=$1; BIN=$2; ROOMS=$3; MEMBERS=$4; RATE=$5; NRUNS=$6
PB=/work/peers-work/peerbench
PORT=18402; DPORT=18412
PREP=/work/bench/shape-r${ROOMS}m${MEMBERS}
if [ "$RATE" = 0 ]; then RARGS="-rate 0 -window 2"; else RARGS="-rate $RATE"; fi
ARGS="-rooms $ROOMS -members $MEMBERS -room-prefix r${ROOMS}m${MEMBERS}- ${PBEXTRA:-}"
PERFEVENTS=syscalls:sys_enter_write,syscalls:sys_enter_pwrite64,syscalls:sys_enter_read,syscalls:sys_enter_pread64,syscalls:sys_enter_fsync,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,context-switches,task-clock
OUT=/work/bench/run/$LABEL; rm -rf $OUT; mkdir -p $OUT
"$(dirname "$0")/prepare-rooms.sh" $BIN $PREP $PORT $ARGS
cp -a $PREP/data $OUT/data; cp $PREP/cache.json $OUT/cache.json
. "$(dirname "$0")/serve.sh"
start_server $BIN $OUT/data $OUT/server.log ${EXTRA:-}
curl -s -o $OUT/metrics0.txt http://127.0.0.1:$PORT/metrics
allocated() { awk '$1 == "go_memstats_alloc_bytes_total" { printf "%.0f", $2 }' "$1"; }
for n in $(seq $NRUNS); do
  CPID=
  PF=/work/bench/$LABEL.prof; [ -n "${PROFALL:-}" ] && PF=/work/bench/$LABEL-$n.prof
  if [ $n = $NRUNS ] || [ -n "${PROFALL:-}" ]; then (sleep 8; curl -s -o $PF "http://127.0.0.1:$DPORT/debug/pprof/profile?seconds=15") & CPID=$!; fi
  if [ -n "${PERFSTAT:-}" ]; then (sleep 8; perf stat -x, -e $PERFEVENTS -p $SPID -o $OUT/perf$n.txt -- sleep 15) & fi
  TIDINGS_SERVER_KEY=$(cat $PREP/key) $PB rooms $ARGS $RARGS -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $OUT/cache.json -server-pid $SPID -duration ${DUR:-25s} -label "$LABEL/$n" -out /work/bench/results.jsonl > $OUT/run$n.log 2>&1
  [ -n "$CPID" ] && wait $CPID
  curl -s -o $OUT/metrics$n.txt http://127.0.0.1:$PORT/metrics
  r=$(tail -1 $OUT/run$n.log | tr ' ' '\n' | grep -E '^(p50_ms|p90_ms|p99_ms|server_us_per_msg|other_cpu_pct|lost|pub_per_s|server_writes_per_delivery)=' | tr '\n' ' ')
  pub=$(tail -1 $OUT/run$n.log | tr ' ' '\n' | sed -n 's/^published=//p')
  a=$(awk -v a="$(allocated $OUT/metrics$((n-1)).txt)" -v b="$(allocated $OUT/metrics$n.txt)" -v m="${pub:-0}" 'BEGIN { if (m > 0) printf "%.2f", (b - a) / m / 1024 }')
  echo "$LABEL/$n $r alloc_kib_per_msg=$a"
done
