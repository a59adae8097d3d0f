#!/usr/bin/env bash
# prepare-rooms.sh BIN PREP PORT ROOM-ARGS... : unless PREP exists, a
# server on PREP/data at 127.0.0.1:PORT and peerbench's -prepare-only for
# the rooms the args describe; leaves PREP/data, PREP/cache.json and the
# app's server key in PREP/key, for the A/B scripts to copy before each run.
set -u
BIN=$1; PREP=$2; PORT=$3; shift 3
PB=/work/peers-work/peerbench
[ -d "$PREP" ] && exit 0
mkdir -p "$PREP"
. "$(dirname "$0")/serve.sh"
$BIN serve --data $PREP/data --addr 127.0.0.1:$PORT $BENCH_FLAGS > $PREP/server.log 2>&1 &
P=$!; wait_port $PORT
KEY=$($BIN apps show --data $PREP/data default | sed -n 's/^server key: *//p'); echo "$KEY" > $PREP/key
TIDINGS_SERVER_KEY=$KEY $PB rooms "$@" -target tidings -tidings.url http://127.0.0.1:$PORT -tidings.cache $PREP/cache.json -prepare-only > $PREP/prepare.log 2>&1
kill $P; wait $P
