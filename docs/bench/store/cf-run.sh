#!/usr/bin/env bash
# cf-run.sh LABEL ROOMS MEMBERS RATE: Centrifugo alone, as warm-run.sh runs
# Tidings alone: one peerbench rooms run of DUR (25s) against it, with
# perf stat's count of its system calls and context switches over 15 s
# ($OUT/perf.txt) and a 15 s CPU profile (/work/bench/LABEL.prof), both
# from 8 s into the run. RATE 0: saturation, window 2. To compare what one
# message costs each server, system call by system call.
# Needs what peers.sh installed: /work/peers-work/bin/centrifugo, its
# config in /work/peers-work/cf, and /work/peers-work/peerbench.
set -u
LABEL=$1; ROOMS=$2; MEMBERS=$3; RATE=$4
PORT=18501
OUT=/work/bench/run/$LABEL; rm -rf $OUT; mkdir -p $OUT/cf
PERFEVENTS=syscalls:sys_enter_write,syscalls:sys_enter_pwrite64,syscalls:sys_enter_read,syscalls:sys_enter_pread64,syscalls:sys_enter_fsync,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,context-switches,task-clock
# The peer tool's config, on a port of its own, with the debug endpoints
# (/debug/pprof) on.
python3 - "$PORT" "$OUT/cf/config.json" <<'PY'
import json, sys
c = json.load(open('/work/peers-work/cf/config.json'))
c['http_server']['port'] = int(sys.argv[1])
c['client']['allowed_origins'] = ['http://127.0.0.1:' + sys.argv[1]]
c['debug'] = {'enabled': True}
c['log'] = {'level': 'warn'}
json.dump(c, open(sys.argv[2], 'w'), indent=1)
PY
(cd $OUT/cf && ulimit -n 20000 && exec /work/peers-work/bin/centrifugo --config config.json) > $OUT/server.log 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null' EXIT
. "$(dirname "$0")/serve.sh"
wait_port $PORT
if [ "$RATE" = 0 ]; then RARGS="-rate 0 -window 2"; else RARGS="-rate $RATE"; fi
(sleep 8; curl -s -o /work/bench/$LABEL.prof "http://127.0.0.1:$PORT/debug/pprof/profile?seconds=15") &
(sleep 8; perf stat -x, -e $PERFEVENTS -p $SPID -o $OUT/perf.txt -- sleep 15) &
# The API key and the token secret, from the same config.
KEY=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["http_api"]["key"])' $OUT/cf/config.json)
SECRET=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["client"]["token"]["hmac_secret_key"])' $OUT/cf/config.json)
/work/peers-work/peerbench rooms -rooms $ROOMS -members $MEMBERS -room-prefix cf- $RARGS -target centrifugo \
  -centrifugo.ws ws://127.0.0.1:$PORT/connection/websocket -centrifugo.api http://127.0.0.1:$PORT/api \
  -centrifugo.api-key "$KEY" -centrifugo.secret "$SECRET" \
  -centrifugo.origin http://127.0.0.1:$PORT -server-pid $SPID -duration ${DUR:-25s} -label "$LABEL" \
  -out /work/bench/results.jsonl > $OUT/run.log 2>&1
sleep 1
tail -1 $OUT/run.log | tr ' ' '\n' | grep -E '^(p50_ms|p90_ms|p99_ms|server_us_per_msg|other_cpu_pct|lost|pub_per_s|server_writes_per_delivery)=' | tr '\n' ' '; echo
