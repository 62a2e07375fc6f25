#!/bin/bash
# A/B of the boot budget's CPU share: before (time queued for a CPU counted as the boot's) and
# after (left out), alternately, 3 runs each, restart runs only, on an otherwise idle machine.
cd /work/main
export BENCH_CONTENDERS='baton+gunicorn,baton+puma' BENCH_RESTART_ONLY=1 BENCH_REPETITIONS=1
for i in 1 2 3; do
  for v in before after; do
    echo "=== run $i $v $(date -u +%T)"
    if [ $v = before ]; then bin=/tmp/rel-before; else bin=/tmp/rel-after; fi
    mkdir -p /tmp/abfix/logs-$v-$i; BENCH_LOG_DIR=/tmp/abfix/logs-$v-$i $bin/baton-bench compare --out /tmp/abfix/$v-$i 2>&1 | grep -E "^restart |compare: done"
  done
done
echo "=== all done $(date -u +%T)"
