# systemd-test-lib.sh: what the drivers of Tests/BatonSystemdTests share
# (systemd-test-driver.sh, systemd-load-driver.sh). Sourced inside
# scripts/systemd-sandbox with the driver's arguments:
#   SCENARIO BATON DEMO_WORKER WORK_DIR UNITS_DIR
# Every wait is bounded; RESULT lines go to stdout, diagnostics to stderr.

scenario=$1 baton=$2 demo=$3 work=$4 units=$5
app=sdt
workers=4
config=$work/$app.toml
listen=$XDG_RUNTIME_DIR/$app-http.sock
control=$XDG_RUNTIME_DIR/baton/$app/control.sock
service=baton-$app.service
socket=baton-$app.socket
# The [listen] addresses of write_config (TOML list items).
addresses="\"unix:$listen\""

result() { printf 'RESULT %s=%s\n' "$1" "$2"; }
fail() { echo "FAIL $*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
sd() { timeout 60 systemctl --user "$@"; }

finish() {
  local rc=$?
  # Whatever a scenario left in the background: load clients, a baton it
  # stopped with SIGSTOP (a failed scenario must not leave it frozen).
  if [[ ${#background_pids[@]} -gt 0 ]]; then
    touch "$work/load.stop"
    kill "${background_pids[@]}" 2>/dev/null
    wait "${background_pids[@]}" 2>/dev/null
  fi
  if [[ -n "${stopped_pid:-}" ]]; then kill -CONT "$stopped_pid" 2>/dev/null; fi
  if [[ "$scenario" != verify ]]; then
    echo "----- systemctl --user status -----" >&2
    timeout 20 systemctl --user status --no-pager -l "$service" "$socket" >&2 2>&1
    timeout 60 systemctl --user stop "$service" "$socket" >/dev/null 2>&1
  fi
  echo "----- manager log (\$SANDBOX_LOG, last 400 lines) -----" >&2
  tail -n 400 "$SANDBOX_LOG" >&2
  exit $rc
}
trap finish EXIT

# Runs systemd-analyze verify on unit files; prints every output line as
# `VERIFY name: line` and the number of complaints about the files' content as
# RESULT NAME_bad=N. systemd-analyze exits 0 on unknown keys: grep its output.
verify() {
  local name=$1 dir=$2; shift 2
  local out
  out=$(cd "$dir" && timeout 60 systemd-analyze verify "$@" 2>&1)
  result "${name}_rc" $?
  while IFS= read -r line; do [[ -n "$line" ]] && echo "VERIFY $name: $line"; done <<<"$out"
  result "${name}_bad" "$(grep -cE "Unknown key|Unknown section|Unknown lvalue|Failed to parse|$dir/[^:]+:[0-9]+:" <<<"$out")"
}

write_config() {  # [extra worker arguments]
  local extra="" a
  for a in "$@"; do extra+=", \"$a\""; done
  cat >"$config" <<EOF
[app]
name = "$app"
command = ["$demo"$extra]
directory = "$work/releases/r1"
# Release state and history of this run only (the unit's StateDirectory= is
# under the sandbox's \$HOME, shared by every run).
state_directory = "$work/state"
workers = $workers
start_concurrency = $workers
[listen]
addresses = [$addresses]
socket_mode = "0660"
[readiness]
mode = "notify"
timeout = "20s"
[stop]
timeout = "10s"
[deploy]
strategy = "surge"
# One slot at a time, as these scenarios were written: their timings (a reload
# lasts at least workers x boot) assume it; the auto width is tested elsewhere.
max_surge = 1
[control]
socket = "$control"
EOF
}

status_json() { timeout 20 "$baton" status --socket "$control" --json 2>&1 | tr -d '\n'; }

# GET through the socket unit's unix socket; prints "STATUS PID" (0 - on failure).
get() {
  local headers
  headers=$(timeout 70 curl -s -o /dev/null -D - --max-time 60 --unix-socket "$listen" "http://localhost$1" | tr -d '\r')
  local status pid
  status=$(awk 'NR==1 {print $2}' <<<"$headers")
  pid=$(awk -F': ' 'tolower($1)=="x-worker-pid" {print $2}' <<<"$headers")
  echo "${status:-0} ${pid:--}"
}

# Sequential requests, each on a new connection (Connection: close), until
# $work/load.stop exists (at most 120 s); counts to $work/load.out ("ok failed":
# a 2xx answer, or anything else). One curl sends `load_batch` of them, paced at
# `load_rate`, and the next batch follows: a curl process per request took about
# 8 ms of CPU each (540 requests in a 5 s reload), the requests themselves far less.
load_batch=25
load_rate=200/s
load() {
  local deadline=$(( $(date +%s) + 120 ))
  : >"$work/load.log"
  while [[ ! -e "$work/load.stop" && $(date +%s) -lt $deadline ]]; do
    timeout 70 curl -s -o /dev/null --max-time 10 --unix-socket "$listen" --rate "$load_rate" -H 'Connection: close' \
      -w '%{stderr}%{http_code} %{exitcode}\n' "http://localhost/?n=[1-$load_batch]" 2>>"$work/load.log" >/dev/null
  done
  local ok failed
  ok=$(awk '$2 == 0 && $1 ~ /^2/' "$work/load.log" | grep -c .)
  failed=$(awk '!($2 == 0 && $1 ~ /^2/)' "$work/load.log" | grep -c .)
  echo "$ok $failed" >"$work/load.out"
}

wait_active() {  # unit, seconds
  local state=""
  for _ in $(seq 1 $(( $2 * 10 ))); do
    state=$(systemctl --user is-active "$1" 2>/dev/null)
    [[ "$state" == active ]] && return 0
    sleep 0.1
  done
  echo "$1 is $state after $2 s" >&2
  return 1
}
# --- shared by the load scenarios ------------------------------------------

# Every process a scenario starts in the background, for the EXIT trap.
background_pids=()

# The inode of the listening unix socket bound at $1 (empty when none listens):
# the same inode after a restart means the same socket, not a new bind. The kernel
# renders /proc/net/unix a page at a time, so a line can be skipped while other
# sockets come and go (measured: 4 misses in 53,479 reads under churn): up to three
# reads before saying none listens.
listening_inode() {
  local inode="" attempt
  for attempt in 1 2 3; do
    inode=$(awk -v p="$1" '$8 == p && $4 == "00010000" { print $7; exit }' /proc/net/unix)
    [[ -n "$inode" ]] && break
  done
  echo "$inode"
}

# One concurrent keep-alive client: curl sends `kload_batch` requests on one
# connection (reopened after a failure, and retried once on a fresh connection
# when a reused one was closed before any answer, as HTTP clients do), again
# and again until $work/load.stop (at most 120 s). One line per request in
# $work/kload.N: `http_code seconds curl_exit curl_error_message`.
# Each client starts at most one request per 2 ms (curl --rate, `kload_rate`), as
# LoadClient.defaultPace paces the Swift tests' clients: back to back, curl
# alone took 5.3 % of the whole test phase's CPU (perf), the workers answering
# it more. The bench scenario empties kload_rate: its clients send back to back.
kload_batch=25
kload_rate=500/s
kload_client() {
  local deadline=$(( $(date +%s) + 120 ))
  while [[ ! -e "$work/load.stop" && $(date +%s) -lt $deadline ]]; do
    timeout 70 curl -s -o /dev/null --max-time 10 --unix-socket "$listen" ${kload_rate:+--rate "$kload_rate"} \
      -w '%{stderr}%{http_code} %{time_total} %{exitcode} %{errormsg}\n' "http://localhost/?c=$1&n=[1-$kload_batch]" \
      2>>"$work/kload.$1" >/dev/null
  done
}

# Starts $1 concurrent keep-alive clients (kload_client) and waits until each
# got an answer (bounded), so that the load is really running.
kload_start() {
  rm -f "$work/load.stop" "$work"/kload.*
  kload_clients=$1
  kload_pids=()
  local c
  for c in $(seq 1 "$1"); do
    kload_client "$c" &
    kload_pids+=($!)
    background_pids+=($!)
  done
  for _ in $(seq 1 100); do
    [[ $(cat "$work"/kload.* 2>/dev/null | wc -l) -ge $1 ]] && return 0
    sleep 0.05
  done
  echo "the load clients got no answer within 5 s" >&2
}

# Stops the clients and reports, under prefix $1: requests answered 2xx (ok),
# connections refused (curl exit 7: nothing listening), other failures
# (failed: reset, empty reply, timeout, non-2xx; `failures` by kind), and the
# median and the largest latency of the answered ones (ms): the gap.
kload_stop() {
  touch "$work/load.stop"
  wait "${kload_pids[@]}"
  local p=$1 all
  all=$(cat "$work"/kload.* 2>/dev/null)
  result "${p}_connections" "$kload_clients"
  result "${p}_ok" "$(awk '$3 == 0 && $1 ~ /^2/' <<<"$all" | grep -c .)"
  result "${p}_refused" "$(awk '$3 == 7' <<<"$all" | grep -c .)"
  result "${p}_failed" "$(awk '$3 != 7 && !($3 == 0 && $1 ~ /^2/)' <<<"$all" | grep -c .)"
  result "${p}_failures" "$(awk '$3 != 7 && !($3 == 0 && $1 ~ /^2/) { n[$3 == 0 ? "http" $1 : "exit" $3]++ }
    END { for (k in n) printf "%s:%d ", k, n[k] }' <<<"$all")"
  # The first few failures as curl saw them, for the test's messages.
  result "${p}_failure_lines" "$(awk '!($3 == 0 && $1 ~ /^2/)' <<<"$all" | head -n 5 | tr '\n' ';')"
  local ms
  ms=$(awk '$3 == 0 && $1 ~ /^2/ { printf "%.1f\n", $2 * 1000 }' <<<"$all" | sort -n)
  result "${p}_p50_ms" "$(awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }' <<<"$ms")"
  result "${p}_max_ms" "$(tail -n 1 <<<"$ms")"
}

# Installs the units `baton units` prints for $config: both, or with
# --no-socket only the service (baton binds [listen] addresses itself and keeps
# them in systemd's FD store). Extra lines for the service go to a drop-in:
# install_units [--no-socket] [DROPIN_LINE...]
install_units() {
  local flags=()
  if [[ "${1:-}" == --no-socket ]]; then flags=(--no-socket); shift; fi
  "$baton" units --config "$config" --binary "$baton" "${flags[@]}" >"$work/units.txt" || fail "baton units exited $?"
  awk -v dir="$SANDBOX_UNIT_DIR" '/^# file: / { out = dir "/" $3; next } { print > out }' "$work/units.txt"
  [[ -s "$SANDBOX_UNIT_DIR/$service" ]] || fail "baton units did not print $service"
  if [[ $# -gt 0 ]]; then
    mkdir -p "$SANDBOX_UNIT_DIR/$service.d"
    { echo "[Service]"; printf '%s\n' "$@"; } >"$SANDBOX_UNIT_DIR/$service.d/test.conf"
  fi
  sd daemon-reload || fail "daemon-reload"
}

main_pid() { systemctl --user show -p MainPID --value "$service"; }

# Waits (at most $2 s) until the service is active with a MainPID other than $1.
wait_new_main_pid() {
  local pid end=$(( SECONDS + $2 ))
  while (( SECONDS < end )); do
    pid=$(main_pid)
    if [[ "$pid" != "$1" && "$pid" != 0 && "$(systemctl --user is-active "$service")" == active ]]; then
      return 0
    fi
    sleep 0.1
  done
  echo "no new active MainPID (was $1) after $2 s" >&2
  return 1
}

# Waits (at most $1 s) until every worker is ready, as `baton status` sees it.
wait_workers_ready() {
  local end=$(( SECONDS + $1 )) s
  while (( SECONDS < end )); do
    s=$(status_json)
    [[ "$s" =~ \"summary\"\ *:\ *\"$workers/$workers\ workers\ ready ]] && return 0
    sleep 0.1
  done
  echo "not every worker ready after $1 s: $s" >&2
  return 1
}

# "present" when process $1 exists (zombies count as gone).
process_state() {
  local s
  s=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)
  [[ -n "$s" && "$s" != Z ]] && echo present || echo gone
}
