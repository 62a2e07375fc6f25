#!/bin/bash
cd /work/main
export BENCH_CONTENDERS='baton+gunicorn,baton+puma,baton+puma(mold)' BENCH_RESTART_ONLY=1 BENCH_REPETITIONS=1
for i in 1 2 3; do
  for n in 0 10; do
    echo "=== run $i boot_nice $n $(date -u +%T)"
    BENCH_BOOT_NICE=$n .build/release/baton-bench compare --out /tmp/abnice/n$n-$i 2>&1 | grep -E "^restart |compare: done"
  done
done
echo "=== all done $(date -u +%T)"
