#!/usr/bin/env bash
# systemd-preflight-driver.sh: the half of Tests/BatonSystemdTests/PreflightUnitTests that runs
# inside scripts/systemd-sandbox, next to a private systemd user manager:
#
#   systemd-sandbox -- timeout -k 10 240 bash systemd-preflight-driver.sh SCENARIO BATON DEMO_WORKER WORK_DIR UNITS_DIR
#
# SCENARIO   unit: a transient user unit runs a python3 tree (the parent touches 32 MiB, then
#            forks a child that touches 16 MiB more); `baton preflight --need 1MiB --unit`
#            measures it (text and --json), then once it is stopped, and for a unit that
#            never existed.
# BATON      the built baton binary (DEMO_WORKER and UNITS_DIR are not used here)
# WORK_DIR   an empty directory
#
# Reports `RESULT key=value` lines on stdout (multi-line outputs joined with " | "), exits 0
# once the scenario ran, 1 when its set-up failed (`FAIL reason`). The assertions are the Swift
# test's. Every wait is bounded.
set -uo pipefail

scenario=$1 baton=$2 work=$4
unit=baton-preflight-probe.service
result() { printf 'RESULT %s=%s\n' "$1" "$2"; }
fail() { echo "FAIL $*"; exit 1; }
joined() { tr '\n' '\r' | sed 's/\r$//; s/\r/ | /g'; }

finish() {
  local rc=$?
  timeout 60 systemctl --user stop "$unit" >/dev/null 2>&1
  echo "----- manager log (\$SANDBOX_LOG, last 100 lines) -----" >&2
  tail -n 100 "$SANDBOX_LOG" >&2
  exit $rc
}
trap finish EXIT

[[ "$scenario" == unit ]] || fail "unknown scenario $scenario"
python=/usr/bin/python3
[[ -x "$python" ]] || python=$(command -v python3) || fail "no python3"
marker=$work/child-ready
# Both halves touch their pages (a bytearray of a non-zero byte), so the tree's PSS holds
# at least 48 MiB; the child says when its share is in.
script="import os, time
a = bytearray(b'\\x01') * (32 << 20)
if os.fork() == 0:
    b = bytearray(b'\\x02') * (16 << 20)
    open('$marker', 'w').close()
time.sleep(200)
"
timeout 60 systemd-run --user --quiet --unit="$unit" "$python" -c "$script" || fail "systemd-run exited $?"
for _ in $(seq 1 300); do [[ -e "$marker" ]] && break; sleep 0.1; done
[[ -e "$marker" ]] || fail "the unit's child did not allocate within 30 s"

result cgroup "$(timeout 60 systemctl --user show -p ControlGroup --value "$unit")"
result main_pid "$(timeout 60 systemctl --user show -p MainPID --value "$unit")"
out=$(timeout 60 "$baton" preflight --need 1MiB --unit "$unit" 2>&1)
result text_rc $?
result text "$(joined <<<"$out")"
out=$(timeout 60 "$baton" preflight --need 1MiB --unit "$unit" --json 2>"$work/json.err")
result json_rc $?
result json "$out"
result json_stderr "$(joined <"$work/json.err")"

timeout 60 systemctl --user stop "$unit" || fail "systemctl stop exited $?"
timeout 60 "$baton" preflight --need 1MiB --unit "$unit" >"$work/stopped.out" 2>"$work/stopped.err"
result stopped_rc $?
result stopped_stdout "$(joined <"$work/stopped.out")"
result stopped_stderr "$(joined <"$work/stopped.err")"
result stopped_stderr_lines "$(wc -l <"$work/stopped.err")"
timeout 60 "$baton" preflight --need 1MiB --unit baton-no-such-unit.service >"$work/none.out" 2>"$work/none.err"
result none_rc $?
result none_stderr "$(joined <"$work/none.err")"
result none_stderr_lines "$(wc -l <"$work/none.err")"
exit 0
