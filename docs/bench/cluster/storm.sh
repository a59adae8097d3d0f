#!/bin/bash
# storm.sh LABEL BIN CLIENTS: a 3-node cluster (ports 19201-19203, pprof on 19211-19213) on a fresh
# PostgreSQL database (127.0.0.1:5432, trust), NATS on 127.0.0.1:4222; one failover storm of
# "tidings bench reconnect", bounded to 400 s; a 20 s CPU profile of node 1 during the storm.
set -u
LABEL=$1; BIN=$2; N=$3
W=${STORM_WORK:-/tmp/storm}/$LABEL; rm -rf $W; mkdir -p $W
DB=storm_$(date +%s)
# The ports of a run before must be free.
for p in 19201 19202 19203; do for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || break; sleep 0.2; done; done
psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $DB" || exit 1
DSN="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
$BIN apps create --store "$DSN" default > $W/apps.log 2>&1
KEY=$($BIN apps rotate-key --store "$DSN" default | sed -n 's/^server key: *//p')
PIDS=()
for i in 1 2 3; do
  $BIN serve --addr 127.0.0.1:1920$i --store "$DSN" --data $W/d$i --broker nats://127.0.0.1:4222 --broker-prefix $DB --debug-addr 127.0.0.1:1921$i \
    --user-rate 0 --conversation-rate 0 --participant-rate 0 --log-level warn > $W/node$i.log 2>&1 &
  PIDS+=($!)
done
trap 'kill -9 ${PIDS[@]} 2>/dev/null; wait ${PIDS[@]} 2>/dev/null; psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1' EXIT
for p in 19201 19202 19203; do for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done; done
U=http://127.0.0.1:19201,http://127.0.0.1:19202,http://127.0.0.1:19203
( for i in $(seq 2000); do grep -q "away:" $W/bench.log 2>/dev/null && { sleep 8; curl -s -o $W/node1.prof "http://127.0.0.1:19211/debug/pprof/profile?seconds=20"; break; }; sleep 0.2; done ) &
timeout 400 $BIN bench reconnect --url $U --key $KEY --failover --clients $N --senders 2 --rate 20 --missed 40 --json > $W/result.json 2> $W/bench.log
echo "$LABEL rc=$? $(tail -c 600 $W/result.json)"
grep -c "4001\|auth" $W/bench.log
tail -3 $W/bench.log
