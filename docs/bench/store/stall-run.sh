#!/usr/bin/env bash
# stall-run.sh LABEL BIN INTERVAL: warm-run.sh LABEL BIN 5000 2 2000 2
# (1:1 rooms at 2,000 msgs/s, two runs, PERFSTAT=1) and, from the end of
# run 1 to the end of run 2, a user created through the API every
# INTERVAL s: how much a write that is not a send costs the sends.
# MODE=read: a read of a user that does not exist instead of each
# creation (the control: what the loop's own processes cost).
# MODE=list: a list of the conversations of a user of the rooms (the
# first page, as an app opening asks for it) instead.
# MODE=delete: a user created, and the one created before deleted
# (?messages=anonymize), at each step instead.
# MODE=serverlist: the first page of the app's conversations, listed with
# the server key (which writes every waiting mark first) instead.
# TRACE=1: a 5 s execution trace 12 s into run 2, in
# /work/bench/LABEL.trace (read it with docs/bench/tracewriter).
set -u
LABEL=$1; BIN=$2; IV=$3
OUT=/work/bench/run/$LABEL; rm -rf $OUT
URL=http://127.0.0.1:18402
( while [ ! -f $OUT/metrics1.txt ]; do sleep 0.2; done
  KEY=$(cat /work/bench/shape-r5000m2/key); i=0
  TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens"]["r5000m2-u0"]["token"])' $OUT/cache.json)
  while [ ! -f $OUT/metrics2.txt ]; do
    i=$((i+1))
    if [ "${MODE:-}" = read ]; then
      curl -s -o /dev/null -w "%{http_code}\n" -H "Authorization: Bearer $KEY" $URL/v1/users/nobody-$i
    elif [ "${MODE:-}" = delete ]; then
      curl -s -o /dev/null -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d "{\"id\":\"stall-$LABEL-$i\",\"displayName\":\"x\"}" $URL/v1/users
      curl -s -o /dev/null -w "%{http_code}\n" -X DELETE -H "Authorization: Bearer $KEY" "$URL/v1/users/stall-$LABEL-$((i-1))?messages=anonymize"
    elif [ "${MODE:-}" = serverlist ]; then
      curl -s -o /dev/null -w "%{http_code}\n" -H "Authorization: Bearer $KEY" "$URL/v1/conversations?limit=20"
    elif [ "${MODE:-}" = list ]; then
      curl -s -o /dev/null -w "%{http_code}\n" -H "Authorization: Bearer $TOKEN" "$URL/v1/conversations?limit=20"
    else
      curl -s -o /dev/null -w "%{http_code}\n" -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d "{\"id\":\"stall-$LABEL-$i-$RANDOM\",\"displayName\":\"x\"}" $URL/v1/users
    fi >> $OUT/codes.txt
    sleep $IV
  done
  echo "$i requests, answered: $(sort $OUT/codes.txt | uniq -c | tr -s ' \n' ' ')" > $OUT/requests.txt ) &
LP=$!
if [ -n "${TRACE:-}" ]; then
  ( while [ ! -f $OUT/metrics1.txt ]; do sleep 0.2; done; sleep 12
    curl -s -o /work/bench/$LABEL.trace "http://127.0.0.1:18412/debug/pprof/trace?seconds=5" ) &
fi
PERFSTAT=1 "$(dirname "$0")/warm-run.sh" $LABEL $BIN 5000 2 2000 2
wait $LP; cat $OUT/requests.txt
