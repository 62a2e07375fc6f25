#!/bin/bash
# A/B of baton+gunicorn's readiness: READY=1 from gunicorn's master as it starts, before it
# forks its worker (master), against READY=1 from the worker's post_worker_init
# (Benchmarks/apps/gunicorn_ready.py, worker), alternately, 3 runs each, restart runs only, on
# an otherwise idle machine, one release build.
cd /work/main
export BENCH_CONTENDERS='baton+gunicorn' BENCH_RESTART_ONLY=1 BENCH_REPETITIONS=1
out=Benchmarks/results/ab-gunicorn-ready
for i in 1 2 3; do
  for v in master worker; do
    echo "=== run $i $v $(date -u +%T)"
    export BENCH_GUNICORN_READY=$v
    mkdir -p /tmp/abgr/logs-$v-$i /tmp/abgr/$v-$i
    BENCH_LOG_DIR=/tmp/abgr/logs-$v-$i .build/release/baton-bench compare --out /tmp/abgr/$v-$i 2>&1 | grep -E "^restart |compare: done"
    cp /tmp/abgr/$v-$i/latest.md $out/$v-$i.md; cp /tmp/abgr/$v-$i/latest.json $out/$v-$i.json
  done
done
echo "=== all done $(date -u +%T)"
