#!/bin/bash
# A/B: workers in a session each (setsid, OLD=checkout of the commit before) against a process
# group each in baton's session (this checkout). Alternating, 3 runs each, idle machine.
# OLD=/path/to/old/checkout (release build done there) OUT=dir ./run.sh; the bench runs
# from its checkout's root (it finds Benchmarks/apps there).
set -u
here="$(cd "$(dirname "$0")/../../.." && pwd)"
export BENCH_CONTENDERS='baton+gunicorn,baton+puma,baton+python(mold)' BENCH_RESTART_ONLY=1 BENCH_REPETITIONS=1
for i in 1 2 3; do
  for side in session group; do
    root="$here"; [ "$side" = session ] && root="$OLD"
    echo "=== run $i $side $(date -u +%T)"
    (cd "$root" && .build/release/baton-bench compare --out "$OUT/$side-$i" 2>&1 | grep -E "^restart |compare: done")
  done
done
echo "=== all done $(date -u +%T)"
