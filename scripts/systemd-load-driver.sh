#!/usr/bin/env bash
# systemd-load-driver.sh: the load, crash and upgrade scenarios of
# Tests/BatonSystemdTests (and of `baton-bench systemd`), run inside
# scripts/systemd-sandbox like systemd-test-driver.sh:
#
#   systemd-sandbox -- timeout -k 10 240 bash systemd-load-driver.sh SCENARIO BATON DEMO_WORKER WORK_DIR UNITS_DIR [ARGS]
#
# SCENARIO
#   fdstore   no socket unit: baton binds two unix sockets and keeps them in
#             systemd's FD store; restart and kill -9 under load keep them (same
#             inode), a socket dropped from the config is removed from the store,
#             stop + start binds anew
#   upgrade   socket unit; `baton upgrade` under load, then an upgrade to a
#             binary that fails its check (/bin/false)
#   kill9     socket unit; kill -9 of baton under load
#   watchdog  socket unit, WatchdogSec=2s; baton frozen with SIGSTOP
#   crash-mid-deploy
#             socket unit, workers booting in 0.75 s; kill -9 of baton while
#             `baton deploy --release r2` has replaced some slots but not all,
#             under load; then the same deploy again
#   bench     socket unit; restart vs upgrade vs reload under load.
#             ARGS: CONNECTIONS (4) BOOT_DELAY (0.5) STEADY_SECONDS (1)
#
# Load: concurrent keep-alive curl clients (kload_* in systemd-test-lib.sh);
# under prefix P it reports P_ok, P_refused (connect failed), P_failed,
# P_failures, P_p50_ms and P_max_ms (the latency gap). RESULT lines, exit codes
# and the log at the end as in systemd-test-driver.sh. Every wait is bounded.
set -uo pipefail

# shellcheck source=systemd-test-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/systemd-test-lib.sh"

connections=4
boot_delay=0.25
mkdir -p "$work/releases/r1"

# Worker pids in a `baton status --json` (every "pid" but baton's own).
worker_pids() { grep -o '"pid" *: *[0-9]*' <<<"$1" | grep -o '[0-9]*$' | grep -vx "$2" | sort -n | tr '\n' ' '; }

# How many workers a `baton status --json` shows ready on release directory $2.
workers_on() {
  awk -v rel="$2" 'BEGIN { RS = "[{}]" } /"generation"/ {
    st = $0; sub(/.*"state" *: *"/, "", st); sub(/".*/, "", st)
    r = $0; sub(/.*"release" *: *"/, "", r); sub(/".*/, "", r)
    if (st == "ready" && r == rel) n++ } END { print n + 0 }' <<<"$1"
}

# Starts the app (socket unit unless --no-socket; the rest are drop-in lines)
# and waits for every worker; reports main_pid and status_before.
start_app() {
  write_config --boot-delay "$boot_delay"
  install_units "$@"
  if [[ "${1:-}" != --no-socket ]]; then sd start "$socket" || fail "cannot start $socket"; fi
  sd start "$service" || fail "cannot start $service"
  wait_active "$service" 30 || fail "$service did not become active"
  wait_workers_ready 30 || fail "workers not ready"
  result main_pid "$(main_pid)"
  result status_before "$(status_json)"
}

# Runs COMMAND under concurrent load: the clients run $2 s before it and $3 s
# after every worker is ready again. Reports under PREFIX: _rc, _ms (until the
# command returned), _ready_ms (until every worker was ready) and the load.
under_load() {  # PREFIX BEFORE AFTER COMMAND...
  local p=$1 before=$2 after=$3 t0 rc
  shift 3
  kload_start "$connections"
  sleep "$before"
  t0=$(now_ms)
  "$@"
  rc=$?
  result "${p}_rc" "$rc"
  result "${p}_ms" $(( $(now_ms) - t0 ))
  wait_workers_ready 30
  result "${p}_ready_ms" $(( $(now_ms) - t0 ))
  sleep "$after"
  kload_stop "$p"
}

# kill -9 of baton, then wait for systemd to start a new one.
kill_baton() { kill -9 "$1" && wait_new_main_pid "$1" 30; }

# baton upgrade [ARGS]; its output in $upgrade_output.
upgrade() { upgrade_output=$(timeout 120 "$baton" upgrade --socket "$control" "$@" 2>&1); }

case "$scenario" in
fdstore)
  extra=$XDG_RUNTIME_DIR/$app-extra.sock
  addresses="\"unix:$listen\", \"unix:$extra\""
  start_app --no-socket LimitCORE=0
  result inode_start "$(listening_inode "$listen")"
  result extra_inode_start "$(listening_inode "$extra")"
  # 1. systemctl restart: the new baton gets both sockets back.
  under_load restart 0.5 0.3 sd restart "$service"
  result main_pid_restart "$(main_pid)"
  result inode_restart "$(listening_inode "$listen")"
  result extra_inode_restart "$(listening_inode "$extra")"
  # 2. A crash (kill -9; an external SIGSEGV would not do: the Swift runtime's
  # backtracer catches it, prints a backtrace and returns, and baton goes on):
  # Restart=on-failure, the sockets come back from the store.
  pid1=$(main_pid)
  under_load crash 0.5 0.3 kill_baton "$pid1"
  result main_pid_crash "$(main_pid)"
  result crashed_pid_state "$(process_state "$pid1")"
  result n_restarts "$(systemctl --user show -p NRestarts --value "$service")"
  result inode_crash "$(listening_inode "$listen")"
  result extra_inode_crash "$(listening_inode "$extra")"
  # 3. The extra address leaves the config: a restart removes it from the store
  # (FDSTOREREMOVE=1), so nothing listens on it any more.
  addresses="\"unix:$listen\""
  write_config --boot-delay "$boot_delay"
  sd restart "$service"
  result stale_restart_rc $?
  wait_workers_ready 30
  result inode_stale "$(listening_inode "$extra" | grep . || echo none)"
  result stale_main_inode "$(listening_inode "$listen")"
  timeout 10 curl -s -o /dev/null --max-time 5 --unix-socket "$extra" http://localhost/
  result stale_curl_rc $?
  # 4. stop + start: systemd empties the FD store on stop, baton binds anew.
  sd stop "$service"
  result stopped_rc $?
  sd start "$service"
  result start_rc $?
  wait_workers_ready 30
  result inode_stop_start "$(listening_inode "$listen")"
  read -r after_status _ < <(get /)
  result after_status "$after_status"
  ;;
upgrade)
  start_app
  under_load upgrade 0.5 0.5 upgrade
  result upgrade_output "$(tr '\n' ' ' <<<"$upgrade_output")"
  result main_pid_upgrade "$(main_pid)"
  result status_upgrade "$(status_json)"
  result active_upgrade "$(systemctl --user is-active "$service")"
  # The upgraded image still talks to systemd: a reload passes and returns.
  timeout 120 systemctl --user reload "$service" >/dev/null 2>&1
  result reload_after_upgrade_rc $?
  result status_reloaded "$(status_json)"
  # A binary that fails its check: nothing changes.
  under_load bad 0.3 0.3 upgrade --binary /bin/false
  result bad_output "$(tr '\n' ' ' <<<"$upgrade_output")"
  result main_pid_bad "$(main_pid)"
  result status_bad "$(status_json)"
  result active_bad "$(systemctl --user is-active "$service")"
  ;;
kill9)
  start_app
  pid0=$(main_pid)
  old_workers=$(worker_pids "$(status_json)" "$pid0")
  inode0=$(listening_inode "$listen")
  under_load kill 0.5 0.5 kill_baton "$pid0"
  result same_inode "$([[ -n "$inode0" && "$(listening_inode "$listen")" == "$inode0" ]] && echo yes || echo no)"
  result main_pid_after "$(main_pid)"
  result n_restarts "$(systemctl --user show -p NRestarts --value "$service")"
  result status_after "$(status_json)"
  result killed_pid_state "$(process_state "$pid0")"
  result old_workers_left "$(for p in $old_workers; do process_state "$p"; done | grep -c present)"
  ;;
watchdog)
  start_app WatchdogSec=2s TimeoutAbortSec=2s LimitCORE=0
  result watchdog_usec "$(systemctl --user show -p WatchdogUSec --value "$service")"
  pid0=$(main_pid)
  old_workers=$(worker_pids "$(status_json)" "$pid0")
  result old_workers "$old_workers"
  t0=$(now_ms)
  kill -STOP "$pid0"
  stopped_pid=$pid0
  # While systemd stops the hung baton, the unit's Result= says why (it is
  # reset when the new one starts): record every value seen until then.
  results_seen=" "
  end=$(( SECONDS + 40 ))
  while (( SECONDS < end )); do
    r=$(systemctl --user show -p Result --value "$service")
    [[ "$results_seen" == *" $r "* ]] || results_seen+="$r "
    pid=$(main_pid)
    [[ "$pid" != "$pid0" && "$pid" != 0 && "$(systemctl --user is-active "$service")" == active ]] && break
    sleep 0.05
  done
  result back_ms $(( $(now_ms) - t0 ))
  result results_seen "$results_seen"
  stopped_pid=""
  wait_workers_ready 30
  result main_pid_after "$(main_pid)"
  result n_restarts "$(systemctl --user show -p NRestarts --value "$service")"
  result hung_pid_state "$(process_state "$pid0")"
  result old_workers_left "$(for p in $old_workers; do process_state "$p"; done | grep -c present)"
  result status_after "$(status_json)"
  read -r after_status _ < <(get /)
  result after_status "$after_status"
  ;;
crash-mid-deploy)
  boot_delay=0.75
  r1=$work/releases/r1 r2=$work/releases/r2
  mkdir -p "$r2"
  start_app
  pid0=$(main_pid)
  kload_start "$connections"
  sleep 0.3
  t0=$(now_ms)
  timeout 60 "$baton" deploy --socket "$control" --release "$r2" >"$work/deploy.out" 2>&1 &
  deploy_pid=$!
  background_pids+=("$deploy_pid")
  # Until a worker serves on r2 while another still serves on r1 (bounded).
  mid=no
  end=$(( SECONDS + 30 ))
  while (( SECONDS < end )); do
    s=$(status_json)
    if [[ $(workers_on "$s" "$r2") -ge 1 && $(workers_on "$s" "$r1") -ge 1 ]]; then mid=yes; break; fi
    sleep 0.05
  done
  result mid_deploy "$mid"
  result mid_deploy_ms $(( $(now_ms) - t0 ))
  # Every process of this baton's generation: the workers it reports, and its
  # children right now (a replacement may have been spawned since).
  old_workers=$(echo $(worker_pids "$s" "$pid0") $(cat /proc/"$pid0"/task/*/children 2>/dev/null) | tr ' ' '\n' | sort -un | tr '\n' ' ')
  result status_at_kill "$s"
  result old_workers "$old_workers"
  t0=$(now_ms)
  kill_baton "$pid0"
  result kill_rc $?
  result kill_ms $(( $(now_ms) - t0 ))
  wait_workers_ready 30
  result kill_ready_ms $(( $(now_ms) - t0 ))
  wait "$deploy_pid"
  result deploy_rc $?
  result deploy_output "$(tr '\n' ' ' <"$work/deploy.out")"
  sleep 0.5
  kload_stop crash
  result main_pid_after "$(main_pid)"
  result active_after "$(systemctl --user is-active "$service")"
  result n_restarts "$(systemctl --user show -p NRestarts --value "$service")"
  result killed_pid_state "$(process_state "$pid0")"
  result old_workers_left "$(for p in $old_workers; do process_state "$p"; done | grep -c present)"
  result status_after "$(status_json)"
  result history_after "$(timeout 20 "$baton" history --socket "$control" --json 2>&1 | tr -d '\n')"
  timeout 20 "$baton" history --socket "$control" >&2
  # The same deploy again, to the end this time.
  t0=$(now_ms)
  timeout 120 "$baton" deploy --socket "$control" --release "$r2" >"$work/redeploy.out" 2>&1
  result redeploy_rc $?
  result redeploy_ms $(( $(now_ms) - t0 ))
  result redeploy_output "$(tail -n 1 "$work/redeploy.out")"
  result status_final "$(status_json)"
  result history_final "$(timeout 20 "$baton" history --socket "$control" --json 2>&1 | tr -d '\n')"
  ;;
bench)
  connections=${6:-4} boot_delay=${7:-0.5} steady=${8:-1} kload_rate=
  result connections "$connections"
  result systemd_version "$(systemctl --version | awk 'NR == 1 { print $2 }')"
  result boot_delay "$boot_delay"
  start_app
  kload_start "$connections"
  sleep "$steady"
  kload_stop steady
  pid0=$(main_pid)
  under_load restart "$steady" "$steady" sd restart "$service"
  pid1=$(main_pid)
  result restart_same_main_pid "$([[ "$pid1" == "$pid0" ]] && echo yes || echo no)"
  under_load upgrade "$steady" "$steady" upgrade
  result upgrade_same_main_pid "$([[ "$(main_pid)" == "$pid1" ]] && echo yes || echo no)"
  under_load reload "$steady" "$steady" timeout 120 systemctl --user reload "$service"
  result reload_same_main_pid "$([[ "$(main_pid)" == "$pid1" ]] && echo yes || echo no)"
  ;;
*) fail "unknown scenario $scenario" ;;
esac

t0=$(now_ms)
if [[ -e "$SANDBOX_UNIT_DIR/$socket" ]]; then sd stop "$service" "$socket"; else sd stop "$service"; fi
result stop_rc $?
result stop_ms $(( $(now_ms) - t0 ))
exit 0
