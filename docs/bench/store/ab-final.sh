#!/usr/bin/env bash
cd /work/bench
for round in 1 2; do
  ./ab-run.sh base-$round /work/bench/tidings-base
  ./ab-run.sh ci0-$round /work/bench/tidings-new TIDINGS_COMMIT_INTERVAL=0
  ./ab-run.sh ci2-$round /work/bench/tidings-new
  ./ab-run.sh ci2cf5-$round /work/bench/tidings-new TIDINGS_CURSOR_FLUSH_INTERVAL=5s
done
