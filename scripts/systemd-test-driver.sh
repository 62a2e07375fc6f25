#!/usr/bin/env bash
# systemd-test-driver.sh: the half of Tests/BatonSystemdTests that runs inside
# scripts/systemd-sandbox, next to a private systemd user manager:
#
#   systemd-sandbox -- timeout -k 10 240 bash systemd-test-driver.sh SCENARIO BATON DEMO_WORKER WORK_DIR UNITS_DIR
#
# SCENARIO   verify | activate | reload | reload-fail | restart | bad-config
#            (load, crash and upgrade scenarios: systemd-load-driver.sh)
# BATON      the built baton binary; DEMO_WORKER the built baton-demo-worker
# WORK_DIR   an empty directory for the config and the release folder
# UNITS_DIR  the project's systemd/ folder (the shipped templates)
#
# It reports to the Swift test with `RESULT key=value` lines on stdout (one
# line per value; JSON values are on one line) and exits 0 once the scenario
# ran, 1 when its set-up failed (`FAIL reason`). The assertions are the Swift
# test's. The manager's log (baton's and the workers' output land there: there
# is no journald) goes to stderr at the end, for the test's failure messages.
# Every wait is bounded.
set -uo pipefail

# shellcheck source=systemd-test-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/systemd-test-lib.sh"

if [[ "$scenario" == verify ]]; then
  mkdir -p "$work/templates" "$work/generated" "$work/control"
  # The shipped templates, instantiated, with paths that exist here.
  for u in socket service; do
    sed "s#/usr/local/bin/baton#$baton#g" "$units/baton@.$u" >"$work/templates/baton@test.$u"
  done
  verify templates "$work/templates" baton@test.socket baton@test.service
  # The units `baton units` prints for one app.
  mkdir -p "$work/releases/r1"
  write_config
  "$baton" units --config "$config" --binary "$baton" >"$work/units.txt" || fail "baton units exited $?"
  awk -v dir="$work/generated" '/^# file: / { out = dir "/" $3; next } { print > out }' "$work/units.txt"
  verify generated "$work/generated" "$socket" "$service"
  # The service alone, for baton's own sockets in the FD store.
  mkdir -p "$work/nosocket"
  "$baton" units --config "$config" --binary "$baton" --no-socket >"$work/nosocket.txt" || fail "baton units --no-socket exited $?"
  awk -v dir="$work/nosocket" '/^# file: / { out = dir "/" $3; next } { print > out }' "$work/nosocket.txt"
  verify nosocket "$work/nosocket" "$service"
  # A control: this systemd does flag what the grep looks for.
  printf '[Service]\nType=notify-reload\nNoSuchKey=1\nExecStart=/bin/true\n' >"$work/control/control.service"
  verify control "$work/control" control.service
  result systemd_version "$(systemctl --version | awk 'NR==1 {print $2}')"
  exit 0
fi

# --- the app under the socket unit ---------------------------------------
# Workers take a moment to boot, so that a reload of N workers lasts at least
# N boot delays: returning early would show.
boot_delay=0.75
mkdir -p "$work/releases/r1"
write_config --boot-delay "$boot_delay"
"$baton" units --config "$config" --binary "$baton" >"$work/units.txt" || fail "baton units exited $?"
awk -v dir="$SANDBOX_UNIT_DIR" '/^# file: / { out = dir "/" $3; next } { print > out }' "$work/units.txt"
[[ -s "$SANDBOX_UNIT_DIR/$socket" && -s "$SANDBOX_UNIT_DIR/$service" ]] || fail "baton units did not print both units"
result boot_delay "$boot_delay"
result workers "$workers"

if [[ "$scenario" == bad-config ]]; then
  # Exit 2 (config error) must not loop: RestartPreventExitStatus=2.
  printf '[app]\nname = "%s"\nworkers = 0\n' "$app" >"$config"
  sd daemon-reload || fail "daemon-reload"
  timeout 60 systemctl --user start "$service" >/dev/null 2>&1
  result start_rc $?
  for _ in $(seq 1 100); do
    [[ "$(systemctl --user is-active "$service")" == failed ]] && break
    sleep 0.1
  done
  sleep 1  # a restart, if one were scheduled (RestartSec= 100ms), would have happened by now
  result active_state "$(systemctl --user is-active "$service")"
  result n_restarts "$(systemctl --user show -p NRestarts --value "$service")"
  result exec_main_status "$(systemctl --user show -p ExecMainStatus --value "$service")"
  result socket_state "$(systemctl --user is-active "$socket")"
  exit 0
fi

if [[ "$scenario" == reload ]]; then
  # A reload outlasting TimeoutStartSec= (the reload's deadline on 252) must
  # still pass: baton sends EXTEND_TIMEOUT_USEC with each step.
  mkdir -p "$SANDBOX_UNIT_DIR/$service.d"
  printf '[Service]\nTimeoutStartSec=2s\n' >"$SANDBOX_UNIT_DIR/$service.d/short-timeout.conf"
  result timeout_start_sec 2
fi
sd daemon-reload || fail "daemon-reload"
sd start "$socket" || fail "cannot start $socket"
result service_before_request "$(systemctl --user is-active "$service")"
result socket_fdname "$(systemctl --user show -p FileDescriptorName --value "$socket")"

# The first request starts baton (socket activation) and waits in the backlog
# until a worker accepts it.
t0=$(now_ms)
read -r first_status first_pid < <(get /)
result first_status "$first_status"
result first_ms $(( $(now_ms) - t0 ))
wait_active "$service" 60 || fail "$service did not become active"
result started_ms $(( $(now_ms) - t0 ))
env_body=$(timeout 20 curl -s --max-time 10 -D "$work/env.headers" --unix-socket "$listen" http://localhost/env)
result env_listen_fdnames "$(grep '^LISTEN_FDNAMES=' <<<"$env_body" | cut -d= -f2-)"
result env_listen_pid "$(grep '^LISTEN_PID=' <<<"$env_body" | cut -d= -f2-)"
result env_worker_pid "$(tr -d '\r' <"$work/env.headers" | awk -F': ' 'tolower($1)=="x-worker-pid" {print $2}')"
result env_notify_socket "$(grep '^NOTIFY_SOCKET=' <<<"$env_body" | cut -d= -f2-)"
result runtime_directory "$XDG_RUNTIME_DIR/baton/$app"
result main_pid "$(systemctl --user show -p MainPID --value "$service")"
result status_before "$(status_json)"

case "$scenario" in
activate)
  result sub_state "$(systemctl --user show -p SubState --value "$service")"
  result status_text "$(systemctl --user show -p StatusText --value "$service")"
  ;;
reload | reload-fail)
  if [[ "$scenario" == reload-fail ]]; then write_config --boot-delay "$boot_delay" --fail-boot; fi
  rm -f "$work/load.stop"
  load &
  loader=$!
  sleep 0.5
  t0=$(now_ms)
  reload_out=$(timeout 120 systemctl --user reload "$service" 2>&1)
  result reload_rc $?
  result reload_ms $(( $(now_ms) - t0 ))
  # Read at once: when systemctl returns, the rollout must be over.
  result status_after "$(status_json)"
  result reload_output "$(tr '\n' ' ' <<<"$reload_out")"
  touch "$work/load.stop"
  wait "$loader"
  result load "$(cat "$work/load.out")"
  read -r after_status after_pid < <(get /)
  result after_status "$after_status"
  result after_pid "$after_pid"
  result active_after "$(systemctl --user is-active "$service")"
  result main_pid_after "$(systemctl --user show -p MainPID --value "$service")"
  if [[ "$scenario" == reload-fail ]]; then
    # Still healthy: the good config reloads again.
    write_config --boot-delay "$boot_delay"
    timeout 120 systemctl --user reload "$service" >/dev/null 2>&1
    result second_reload_rc $?
  fi
  ;;
restart)
  # The socket unit keeps the socket across a restart of the service: clients
  # (4 concurrent keep-alive ones) wait in the backlog while the new baton boots
  # its workers; the largest latency is the gap.
  inode_before=$(listening_inode "$listen")
  kload_start 4
  sleep 0.5
  t0=$(now_ms)
  sd restart "$service"
  result restart_rc $?
  result restart_ms $(( $(now_ms) - t0 ))
  result socket_path_after "$([[ -S "$listen" ]] && echo present || echo missing)"
  read -r after_status after_pid < <(get /)
  result after_status "$after_status"
  result after_pid "$after_pid"
  sleep 0.3
  kload_stop restart
  result same_inode "$([[ -n "$inode_before" && "$(listening_inode "$listen")" == "$inode_before" ]] && echo yes || echo no)"
  result status_after "$(status_json)"
  result active_after "$(systemctl --user is-active "$service")"
  result socket_state "$(systemctl --user is-active "$socket")"
  result main_pid_after "$(systemctl --user show -p MainPID --value "$service")"
  ;;
*) fail "unknown scenario $scenario" ;;
esac

t0=$(now_ms)
sd stop "$service" "$socket"
result stop_rc $?
result stop_ms $(( $(now_ms) - t0 ))
result service_result "$(systemctl --user show -p Result --value "$service")"
exit 0
