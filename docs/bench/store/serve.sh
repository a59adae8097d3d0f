# serve.sh: sourced by the scripts beside it (. "$(dirname "$0")/serve.sh").
#
# start_server BIN DATA LOG [FLAG...] starts `BIN serve` on the data
# directory DATA, listening on 127.0.0.1:$PORT (and its debug listener on
# 127.0.0.1:$DPORT if DPORT is set), with the rate limits a load run would
# meet lifted and warnings only in LOG; FLAGs come after those, so they
# may change them (--log-level debug). $SENV, if set, is the server's
# environment (NAME=VALUE ...). It sets SPID, has the script's exit stop
# the server, and returns once the port takes connections.
#
# wait_port PORT [TRIES] waits until 127.0.0.1:PORT takes connections,
# 0.1 s between tries (100 by default).
BENCH_FLAGS="--command-rate 1000000 --user-rate 0 --app-rate 0 --conversation-rate 0 --participant-rate 0 --log-level warn"

wait_port() {
  local i
  for i in $(seq "${2:-100}"); do
    (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start_server() {
  local bin=$1 data=$2 log=$3
  shift 3
  env ${SENV:-} "$bin" serve --data "$data" --addr 127.0.0.1:$PORT ${DPORT:+--debug-addr 127.0.0.1:$DPORT} \
    $BENCH_FLAGS "$@" > "$log" 2>&1 &
  SPID=$!
  trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null' EXIT
  wait_port $PORT ${WAIT_TRIES:-100}
}
