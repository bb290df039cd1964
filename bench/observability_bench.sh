#!/usr/bin/env bash
# bench/observability_bench.sh: what statistics + access logging cost on the
# proxied path. Two Torii instances, same binary, `workers: 1`, side by side:
#
#   on   access log to a real file (JSON format) and statistics on (the default)
#   off  "access_log": {"path": "off"} and "stats": {"enabled": false}
#
# Both have an admin listener (served by the master, idle during the runs), so
# the two configs differ only in those two settings. Same nginx origin (1 KiB
# body), same wrk load, same core, interleaved rounds on, off, on, off, ...
# Prints the medians of req/s, p50/p99 latency and proxy CPU time per request
# (user+system of the instance's whole process tree, from /proc) and the
# on/off ratios. The method is proxy_bench.sh's (see bench/README.md).
#
# Checks: after every "on" run, wait 0.5 s (the access log is flushed at least
# every 200 ms) and count the lines of the access log, which must be at least
# 90 % of the requests wrk reported (the file is then truncated, so the disk
# does not fill up); at the end, /metrics of "on" must show
# torii_requests_total > 0 and that of "off" no request series.
#
# Usage:   bench/observability_bench.sh                 # 3 rounds of 10 s
#          QUICK=1 bench/observability_bench.sh         # smoke test: 1 round of 3 s
#          ROUNDS=5 DURATION=10s CALLGRIND=1 bench/observability_bench.sh
#
# Environment (defaults in brackets): as proxy_bench.sh (ROUNDS [3],
# DURATION [10s], WARMUP [2s], CONNECTIONS [64], THREADS [1], BODY_BYTES
# [1024], PROXY_CPU [0], LOAD_CPU [1], PORT_BASE [18700], TORII_BIN,
# TORII_BUILD_DIR, NGINX_BIN, RESULTS_DIR, QUIET_MAX_PCT [15], QUIET_WAIT
# [120], NOISY_PCT [10], NOISY_RETRIES [2], CALLGRIND, CALLGRIND_DURATION
# [5s], QUICK), plus
#   ACCESS_LOG_DIR [a new mktemp -d under TMPDIR or /tmp]  where the "on"
#                     instance writes access.log (removed at the end unless
#                     ACCESS_LOG_DIR was given)
#   LOG_LINES_MIN_PCT [90]  lines of access log per 100 requests, at least
#   PERF=1            after the rounds, one extra unrecorded run per variant under
#                     perf record (top functions, DSOs) and one under perf stat
#                     on syscall tracepoints (system calls per request)
#   CALLGRIND=1       also: user-space instructions per request by function, on
#                     less off (<work dir>/cg/on-minus-off.tsv)
#   CALLGRIND_SPLIT=1 with CALLGRIND=1: also callgrind (only) for statistics
#                     alone, the JSON access log alone and the combined-format
#                     access log alone
#
# Output: the tables on stdout; bench/results/observability-<timestamp>.json
# and bench/results/observability-<timestamp>/ (configs, logs, raw wrk
# outputs, the first lines of the access log). Exit status 0 if every run was
# clean and every check passed, 1 otherwise (the 5 % target does not change it).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- parameters
bench_run_parameters  # ROUNDS, DURATION, WARMUP, CONNECTIONS, THREADS, QUIET_*, NOISY_*
BODY_BYTES=${BODY_BYTES:-1024}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${PORT_BASE:-18700}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}
TORII_BUILD_DIR=${TORII_BUILD_DIR:-$REPO/build-bench}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
LOG_LINES_MIN_PCT=${LOG_LINES_MIN_PCT:-90}
VARIANTS=(on off)

bench_check_run_parameters

COMMAND="ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS"
[ "${QUICK:-0}" = 1 ] && COMMAND="QUICK=1 $COMMAND"
[ "${CALLGRIND:-0}" = 1 ] && COMMAND="$COMMAND CALLGRIND=1"
[ "${CALLGRIND_SPLIT:-0}" = 1 ] && COMMAND="$COMMAND CALLGRIND_SPLIT=1"
[ "${PERF:-0}" = 1 ] && COMMAND="$COMMAND PERF=1"
[ -n "${TORII_BIN:-}" ] && COMMAND="$COMMAND TORII_BIN=$TORII_BIN"
COMMAND="$COMMAND bench/observability_bench.sh"

bench_require wrk taskset curl awk sort cmp timeout getconf wc truncate
[ -x "$NGINX_BIN" ] || bench_die "nginx not found (set NGINX_BIN)"
bench_check_cores proxy

# ---------------------------------------------------------------- torii binary
bench_build_torii

# ---------------------------------------------------------------- work dir
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$RESULTS_DIR"
WORK="$RESULTS_DIR/observability-$STAMP"
SUMMARY="$RESULTS_DIR/observability-$STAMP.json"
mkdir -p "$WORK"/{origin-tmp,wrk}
chmod 755 "$WORK" "$WORK"/origin-tmp # the origin's nginx worker may run as nobody
RUNS="$WORK/runs.tsv"
PROBLEMS=()
if [ -n "${ACCESS_LOG_DIR:-}" ]; then
  mkdir -p "$ACCESS_LOG_DIR"
  OWN_LOG_DIR=0
else
  ACCESS_LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/torii-obs-bench.XXXXXX")
  OWN_LOG_DIR=1
fi
ACCESS_LOG_DIR=$(cd "$ACCESS_LOG_DIR" && pwd)
ACCESS_LOG="$ACCESS_LOG_DIR/access.log"
ACCESS_LOG_FS=$(df -PT "$ACCESS_LOG_DIR" 2>/dev/null | awk 'NR == 2 { print $2 " on " $7 }')

# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
  local rc=$1
  # bench_cleanup has stopped every torii already: nothing writes here any more.
  if ((OWN_LOG_DIR)); then rm -rf -- "$ACCESS_LOG_DIR"; fi
  if ((rc != 0)); then bench_log "work dir (configs, logs, wrk outputs): $WORK"; fi
}
bench_install_traps on_exit

# ---------------------------------------------------------------- configs
ORIGIN_PORT=$(bench_pick_port "$PORT_BASE") || bench_die "no free port"
USED=("$ORIGIN_PORT")
pick() { # -> PICKED, a free port not used yet (no subshell: USED must grow)
  PICKED=$(bench_pick_port $((USED[-1] + 1)) "${USED[@]}") || bench_die "no free port"
  USED+=("$PICKED")
}
declare -A PORT_OF ADMIN_OF PID_OF LOG_OF CONF_OF
for v in "${VARIANTS[@]}"; do
  pick
  PORT_OF[$v]=$PICKED
  pick
  ADMIN_OF[$v]=$PICKED
done

BODY=$(awk -v n="$BODY_BYTES" 'BEGIN { s = ""; while (length(s) < n) s = s "0123456789abcdef"; printf "%s", substr(s, 1, n) }')
printf '%s' "$BODY" >"$WORK/expected-body"
bench_render "$BENCH_DIR/nginx-origin.conf.tmpl" "$WORK/origin.conf" \
  DIR="$WORK" ORIGIN_PORT="$ORIGIN_PORT" BODY="$BODY"

# torii_config VARIANT PORT ADMIN_PORT ACCESS_LOG_PATH OUT: the config of one
# instance. The same as bench/torii-proxy.json.tmpl (proxy_bench.sh's Torii)
# plus an admin listener, and the two settings under test.
torii_config() {
  local v=$1 port=$2 admin=$3 log=$4 out=$5 obs
  case $v in
  on) obs="\"access_log\": {\"path\": $(bench_json_str "$log"), \"format\": \"json\"}" ;;
  off) obs='"access_log": {"path": "off"}, "stats": {"enabled": false}' ;;
  # only for CALLGRIND_SPLIT=1:
  stats_only) obs='"access_log": {"path": "off"}' ;;
  log_only) obs="\"access_log\": {\"path\": $(bench_json_str "$log"), \"format\": \"json\"}, \"stats\": {\"enabled\": false}" ;;
  combined_log_only) obs="\"access_log\": {\"path\": $(bench_json_str "$log"), \"format\": \"combined\"}, \"stats\": {\"enabled\": false}" ;;
  *) bench_die "unknown variant $v" ;;
  esac
  cat >"$out" <<EOF
{"workers": 1, "log_level": "warn", "listeners": [{"address": "127.0.0.1:$port"}],
 "admin": {"address": "127.0.0.1:$admin"},
 $obs,
 "upstreams": {"app": {"servers": ["127.0.0.1:$ORIGIN_PORT"], "pool": {"max_idle": 128}}},
 "routes": [{"match": {"host": "*", "path_prefix": "/"}, "upstream": "app"}]}
EOF
}
for v in "${VARIANTS[@]}"; do
  CONF_OF[$v]="$WORK/torii-$v.json"
  LOG_OF[$v]="$WORK/torii-$v.log"
  torii_config "$v" "${PORT_OF[$v]}" "${ADMIN_OF[$v]}" "$ACCESS_LOG" "${CONF_OF[$v]}"
done

"$NGINX_BIN" -t -q -p "$WORK" -c "$WORK/origin.conf" >"$WORK/origin-t.log" 2>&1 ||
  { cat "$WORK/origin-t.log" >&2; bench_die "origin config rejected"; }
for v in "${VARIANTS[@]}"; do
  "$TORII_BIN" -t -c "${CONF_OF[$v]}" >"$WORK/torii-$v-t.log" 2>&1 ||
    { cat "$WORK/torii-$v-t.log" >&2; bench_die "torii config ($v) rejected"; }
done

# ---------------------------------------------------------------- start
bench_log "origin 127.0.0.1:$ORIGIN_PORT (core $LOAD_CPU); torii on 127.0.0.1:${PORT_OF[on]} (admin ${ADMIN_OF[on]}), off 127.0.0.1:${PORT_OF[off]} (admin ${ADMIN_OF[off]}) (core $PROXY_CPU)"
bench_log "access log of 'on': $ACCESS_LOG ($ACCESS_LOG_FS)"
bench_start origin "$LOAD_CPU" "$WORK/origin.log" "$NGINX_BIN" -p "$WORK" -c "$WORK/origin.conf"
ORIGIN_PID=$BENCH_LAST_PID
for v in "${VARIANTS[@]}"; do
  bench_start "torii-$v" "$PROXY_CPU" "${LOG_OF[$v]}" "$TORII_BIN" -c "${CONF_OF[$v]}"
  PID_OF[$v]=$BENCH_LAST_PID
done

bench_wait_port 127.0.0.1 "$ORIGIN_PORT" 10 "$ORIGIN_PID" ||
  { cat "$WORK/origin.log" "$WORK/origin-error.log" >&2 2>/dev/null; bench_die "origin did not start"; }
for v in "${VARIANTS[@]}"; do
  for port in "${PORT_OF[$v]}" "${ADMIN_OF[$v]}"; do
    bench_wait_port 127.0.0.1 "$port" 10 "${PID_OF[$v]}" ||
      { tail -n 50 "${LOG_OF[$v]}" >&2; bench_die "torii ($v) did not start (port $port)"; }
  done
done

check_body() { # NAME PORT
  local code
  code=$(curl -sS --max-time 5 -o "$WORK/check-$1.body" -w '%{http_code}' "http://127.0.0.1:$2/") || {
    [ -n "${LOG_OF[$1]:-}" ] && { bench_warn "last lines of ${LOG_OF[$1]}:"; tail -n 10 "${LOG_OF[$1]}" >&2; }
    bench_die "$1: curl failed"
  }
  [ "$code" = 200 ] || bench_die "$1: GET / answered $code, want 200"
  cmp -s "$WORK/check-$1.body" "$WORK/expected-body" ||
    bench_die "$1: body differs from the origin's ($(wc -c <"$WORK/check-$1.body") bytes, want $BODY_BYTES)"
}
check_body origin "$ORIGIN_PORT"
for v in "${VARIANTS[@]}"; do
  check_body "$v" "${PORT_OF[$v]}"
  curl -sS --max-time 5 -D "$WORK/headers-$v.txt" -o /dev/null "http://127.0.0.1:${PORT_OF[$v]}/"
done
# The access log of "on" has the checks' lines, as JSON objects.
sleep 0.5
head -n 2 "$ACCESS_LOG" >"$WORK/access-log-sample.txt" 2>/dev/null || true
[ -s "$WORK/access-log-sample.txt" ] || bench_die "on: nothing in $ACCESS_LOG after 2 requests (log: ${LOG_OF[on]})"
if command -v jq >/dev/null 2>&1; then
  jq -e 'select(.status == 200 and .method == "GET")' "$WORK/access-log-sample.txt" >/dev/null ||
    bench_die "on: the access log's lines are not JSON with status 200: $(head -n 1 "$WORK/access-log-sample.txt")"
fi

TORII_VERSION=$("$TORII_BIN" --version 2>/dev/null || echo unknown)
NGINX_VERSION=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }')
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY_FILES=$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | awk '{ print $NF }' | paste -sd' ' - || true)
GIT_DIRTY=$([ -n "$GIT_DIRTY_FILES" ] && echo true || echo false)
TORII_SHA=$(sha256sum "$TORII_BIN" | cut -c1-16)
CLK_TCK=$(bench_clk_tck)
MACHINE=$(bench_machine_info)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

bench_log "machine: $MACHINE; load average $LOADAVG_START"
bench_log "git $GIT_REV$([ "$GIT_DIRTY" = true ] && echo " + uncommitted changes in: $GIT_DIRTY_FILES")"
bench_log "torii: $TORII_BIN ($TORII_VERSION, ${TORII_BUILD_TYPE:-build type unknown}, sha256 $TORII_SHA...); origin nginx $NGINX_VERSION; wrk $WRK_VERSION"
for v in "${VARIANTS[@]}"; do bench_log "tree of torii $v: $(bench_tree_pids "${PID_OF[$v]}" | tr '\n' ' ')"; done

# ---------------------------------------------------------------- runs
URL_OF() { echo "http://127.0.0.1:${PORT_OF[$1]}/"; }
printf 'variant\tround\t%s\tlog_lines\tlog_lines_pct\tlog_bytes_per_line\tuser_us_per_req\tsys_us_per_req\n' "$BENCH_RUN_COLUMNS" >"$RUNS"
FAILED=0
LOG_LINES_TOTAL=0

# run_one VARIANT ROUND DURATION: one wrk run against VARIANT; ROUND "warmup"
# is not recorded. proxy_bench.sh's run_one (bench_measure_run), plus the
# access-log check.
run_one() {
  local proxy=$1 round=$2 dur=$3
  bench_measure_run "$proxy" "$round" "$dur" "$(URL_OF "$proxy")" "${PID_OF[$proxy]}" "${LOG_OF[$proxy]}" || return 1
  local req=$BR_REQ

  # The access log: every request of this run should be in it. The final
  # flush happens within flush_interval (200 ms) of the last request. Then
  # empty it (O_APPEND: the next lines go to the start), so that a full run
  # does not fill the disk, and so that the next run's count starts at 0.
  local lines=nan lines_pct=nan bpl=nan bytes
  if [ "$proxy" = on ]; then
    sleep 0.5
    lines=$(wc -l <"$ACCESS_LOG" 2>/dev/null || echo 0)
    bytes=$(stat -c %s "$ACCESS_LOG" 2>/dev/null || echo 0)
    truncate -s 0 "$ACCESS_LOG"
    LOG_LINES_TOTAL=$((LOG_LINES_TOTAL + lines))
    lines_pct=$(awk -v l="$lines" -v n="$req" 'BEGIN { if (n + 0 > 0) printf "%.1f\n", 100 * l / n; else print "nan" }')
    bpl=$(awk -v b="$bytes" -v l="$lines" 'BEGIN { if (l > 0) printf "%.0f\n", b / l; else print "nan" }')
    if ! awk -v p="$lines_pct" -v m="$LOG_LINES_MIN_PCT" 'BEGIN { exit !(p != "nan" && p + 0 >= m + 0) }'; then
      PROBLEMS+=("on round $round: access log has $lines lines for $req requests ($lines_pct %, want >= $LOG_LINES_MIN_PCT %)")
      FAILED=1
      bench_warn "on round $round: access log has $lines lines for $req requests ($lines_pct %)"
    fi
  fi

  if [ "$round" = warmup ]; then
    bench_log "warm-up $proxy: $BR_RPS req/s$([ "$proxy" = on ] && echo ", $lines access-log lines for $req requests")"
  else
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proxy" "$round" "$(bench_run_fields)" \
      "$lines" "$lines_pct" "$bpl" "$BR_USER_US" "$BR_SYS_US" >>"$RUNS"
    bench_log "$(printf 'round %s %-3s %9s req/s  p50 %6.0f us  p99 %6.0f us  cpu %6s us/req  proxy cpu %5s%%  other %s%%%s%s' \
      "$round" "$proxy" "$BR_RPS" "$BR_P50" "$BR_P99" "$BR_CPU_US" "$BR_UTIL" "$BR_OTHER" \
      "$([ "$proxy" = on ] && echo "  log lines ${lines_pct}%")" "$([ "$BR_NOISY" = yes ] && echo '  NOISY')")"
  fi
}

bench_log "warm-up: $WARMUP per instance"
for v in "${VARIANTS[@]}"; do run_one "$v" warmup "$WARMUP" || true; done
bench_log "measuring: $ROUNDS round(s) of $DURATION, -t$THREADS -c$CONNECTIONS, order ${VARIANTS[*]}"
bench_run_rounds run_one "$ROUNDS" "$DURATION" "${VARIANTS[@]}"
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

# Optional, PERF=1: after the rounds, one extra unrecorded run per variant
# under `perf record` (cpu-clock, call graphs: top functions and DSOs) and one
# under `perf stat` on the syscall tracepoints (system calls per request), as
# in proxy_bench.sh. The access log is emptied after each.
SYSCALLS=(epoll_wait epoll_pwait epoll_ctl read readv recvfrom recvmsg write writev pwrite64 pwritev sendto sendmsg
  accept4 close connect futex io_uring_enter openat fsync fdatasync getpid clock_gettime gettimeofday)
if [ "${PERF:-0}" = 1 ]; then
  if command -v perf >/dev/null 2>&1; then
    tracepoints=$(perf list tracepoint 2>/dev/null || true)
    evs=raw_syscalls:sys_enter
    for sc in "${SYSCALLS[@]}"; do
      if grep -q "syscalls:sys_enter_$sc " <<<"$tracepoints"; then evs="$evs,syscalls:sys_enter_$sc"; fi
    done
    for v in "${VARIANTS[@]}"; do
      # All threads of the tree: the access log writes from libuv's thread pool.
      pids=$(bench_tree_pids "${PID_OF[$v]}" | paste -sd, -)
      bench_log "perf: profiling $v ($pids) for $DURATION"
      perf record -q -e cpu-clock -F "${PERF_FREQ:-999}" -g -p "$pids" -o "$WORK/perf-$v.data" >"$WORK/perf-$v.log" 2>&1 &
      perf_pid=$!
      BENCH_PIDS+=("$perf_pid")
      BENCH_STOP_SIG[$perf_pid]=INT
      sleep 0.5
      bench_wrk "$WORK/wrk/$v-perf.txt" "$LOAD_CPU" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$(URL_OF "$v")" || true
      bench_stop "$perf_pid" 30 INT
      perf report -i "$WORK/perf-$v.data" --no-children --sort sym --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n "${PERF_TOP:-40}" >"$WORK/perf-$v-top.txt" || true
      perf report -i "$WORK/perf-$v.data" --no-children --sort dso --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n 15 >"$WORK/perf-$v-dso.txt" || true
      perf stat -x, -e "$evs" -p "$pids" -o "$WORK/syscalls-$v.csv" >/dev/null 2>&1 &
      perf_pid=$!
      BENCH_PIDS+=("$perf_pid")
      BENCH_STOP_SIG[$perf_pid]=INT
      sleep 0.5
      bench_wrk "$WORK/wrk/$v-syscalls.txt" "$LOAD_CPU" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$(URL_OF "$v")" || true
      sleep 0.5 # the last flush of the access log
      bench_stop "$perf_pid" 10 INT
      n=$(bench_wrk_field "$(bench_wrk_parse "$WORK/wrk/$v-syscalls.txt")" requests)
      awk -F, -v n="$n" '/^[0-9]/ { name = $3; sub(/^(raw_)?syscalls:sys_enter_?/, "", name); if (name == "") name = "all"
          printf "%s %.3f\n", name, $1 / n }' "$WORK/syscalls-$v.csv" >"$WORK/syscalls-$v-per-req.txt"
      [ "$v" = on ] && truncate -s 0 "$ACCESS_LOG"
    done
  else
    bench_warn "PERF=1 but perf is not installed (apt-get install linux-perf)"
  fi
fi

# ---------------------------------------------------------------- checks
# /metrics once at the end: "on" counted requests, "off" counted none.
WRK_REQ_ON=$(awk -F'\t' 'NR > 1 && $1 == "on" && $4 != "nan" { s += $4 } END { print s + 0 }' "$RUNS")
metrics_requests() { # VARIANT -> sum of torii_requests_total, or "error"
  if curl -sS --max-time 5 -o "$WORK/metrics-$1.txt" "http://127.0.0.1:${ADMIN_OF[$1]}/metrics"; then
    awk '/^torii_requests_total[{ ]/ { s += $NF } END { printf "%.0f\n", s }' "$WORK/metrics-$1.txt"
  else
    echo error
  fi
}
METRICS_REQ_ON=$(metrics_requests on)
METRICS_REQ_OFF=$(metrics_requests off)
if ! [[ $METRICS_REQ_ON =~ ^[0-9]+$ ]] || ((METRICS_REQ_ON == 0)); then
  PROBLEMS+=("on: /metrics shows torii_requests_total = $METRICS_REQ_ON, want > 0 (see $WORK/metrics-on.txt)")
  FAILED=1
elif ((METRICS_REQ_ON < WRK_REQ_ON)); then
  PROBLEMS+=("on: /metrics shows torii_requests_total = $METRICS_REQ_ON, less than the $WRK_REQ_ON requests wrk reported in the measured runs")
  FAILED=1
fi
if [ "$METRICS_REQ_OFF" != 0 ]; then
  PROBLEMS+=("off: /metrics shows torii_requests_total = $METRICS_REQ_OFF, want 0 with stats disabled (see $WORK/metrics-off.txt)")
  FAILED=1
fi
bench_log "/metrics: torii_requests_total = $METRICS_REQ_ON (on; wrk reported $WRK_REQ_ON in the measured runs), $METRICS_REQ_OFF (off)"

# Torii's logs at level warn should be empty in a clean run.
declare -A TORII_LOG_LINES
for v in "${VARIANTS[@]}"; do
  n=$(grep -c . "${LOG_OF[$v]}" || true)
  e=$(grep -c 'level=error' "${LOG_OF[$v]}" || true)
  TORII_LOG_LINES[$v]=$n
  if ((n > 0)); then
    bench_warn "torii ($v) wrote $n log line(s) at level >= warn ($e error); first ones:"
    head -n 10 "${LOG_OF[$v]}" >&2
    ((e == 0)) || { PROBLEMS+=("torii ($v) logged $e error line(s), see ${LOG_OF[$v]}"); FAILED=1; }
  fi
done

# ---------------------------------------------------------------- callgrind
# User-space instructions per request of each instance's worker, as in
# proxy_bench.sh: a fresh instance under callgrind serves 1 request, another
# CALLGRIND_DURATION of wrk load; (Ir_load - Ir_1) / (requests_load - 1).
# The access log's writes run on libuv's thread pool, in the worker process:
# callgrind counts all its threads. Kernel work (the write to the file) is
# not counted.
declare -A IR_PER_REQ=([on]=nan [off]=nan)
CG_VARIANTS=("${VARIANTS[@]}")
[ "${CALLGRIND_SPLIT:-0}" = 1 ] && CG_VARIANTS+=(stats_only log_only combined_log_only)
callgrind_run() { # VARIANT DIR LOAD(0|1): sets CG_RESULT="ir requests"
  local v=$1 dir=$2 load=$3 port=${CG_PORT_OF[$1]} n master
  mkdir -p "$dir"
  bench_start "cg-$v" "$PROXY_CPU" "$dir/log" valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
    "$TORII_BIN" -c "$WORK/cg/torii-$v.json"
  master=$BENCH_LAST_PID
  bench_wait_port 127.0.0.1 "$port" 60 "$master" || { tail -n 20 "$dir/log" >&2; return 1; }
  sleep 1
  if [ "$load" = 1 ]; then
    bench_wrk "$dir/wrk.txt" "$LOAD_CPU" -t"$THREADS" -c"$CONNECTIONS" -d"$CALLGRIND_DURATION" "http://127.0.0.1:$port/" || true
    n=$(bench_wrk_field "$(bench_wrk_parse "$dir/wrk.txt")" requests)
  else
    curl -sS --max-time 30 -o /dev/null "http://127.0.0.1:$port/" || return 1
    n=1
  fi
  sleep 0.5 # one more flush of the access log, as in the measured runs
  bench_stop "$master" 60
  if [ -e "$ACCESS_LOG_DIR/cg-access.log" ]; then
    echo "$n requests, $(wc -l <"$ACCESS_LOG_DIR/cg-access.log" 2>/dev/null || echo 0) access-log lines" >"$dir/access-log-lines.txt"
    truncate -s 0 "$ACCESS_LOG_DIR/cg-access.log" 2>/dev/null || true
  fi
  CG_RESULT="$(bench_callgrind_worker_ir "$dir" "$master") $n"
  # The worker's file (the busiest one that is not the master's), for cg_functions.
  local f
  for f in "$dir"/cg.*; do
    [ "${f##*/cg.}" = "$master" ] && continue
    printf '%s %s\n' "$(awk '/^(summary|totals):/ { print $2; exit }' "$f")" "$f"
  done | sort -n | tail -n 1 | cut -d' ' -f2- >"$dir/worker-file"
}
# cg_functions DIR: "Ir<TAB>function" lines of the worker's callgrind file in
# DIR (self cost, every function), through callgrind_annotate.
cg_functions() {
  local f
  f=$(cat "$1/worker-file" 2>/dev/null) && [ -n "$f" ] || return 0
  callgrind_annotate --inclusive=no --threshold=100 "$f" 2>/dev/null | awk '
    /^ *[0-9,]+ +\(/ && !/PROGRAM TOTALS/ {
      v = $1; gsub(",", "", v); $1 = ""; $2 = ""
      sub(/^ +/, ""); sub(/ \[[^]]*\]$/, ""); sub(/^[^:]*:/, "")
      print v "\t" $0
    }'
}
declare -A CG_PORT_OF CG_N1 CG_NL
if [ "${CALLGRIND:-0}" = 1 ]; then
  if command -v valgrind >/dev/null 2>&1; then
    CALLGRIND_DURATION=${CALLGRIND_DURATION:-5s}
    mkdir -p "$WORK/cg"
    for v in "${CG_VARIANTS[@]}"; do
      pick
      CG_PORT_OF[$v]=$PICKED
      pick
      torii_config "$v" "${CG_PORT_OF[$v]}" "$PICKED" "$ACCESS_LOG_DIR/cg-access.log" "$WORK/cg/torii-$v.json"
    done
    for v in "${CG_VARIANTS[@]}"; do
      bench_log "callgrind: $v, 1 request, then $CALLGRIND_DURATION of load"
      if callgrind_run "$v" "$WORK/cg/$v-1" 0 && one=$CG_RESULT &&
        callgrind_run "$v" "$WORK/cg/$v-load" 1 && many=$CG_RESULT; then
        IR_PER_REQ[$v]=$(awk -v a="$one" -v b="$many" 'BEGIN { split(a, x, " "); split(b, y, " ")
          if (y[2] - x[2] <= 0 || x[1] == 0 || y[1] == 0) print "nan"; else printf "%.0f\n", (y[1] - x[1]) / (y[2] - x[2]) }')
        bench_log "callgrind: $v worker: $one (Ir requests) / $many -> ${IR_PER_REQ[$v]} instructions/request"
        CG_N1[$v]=${one#* }
        CG_NL[$v]=${many#* }
      else
        PROBLEMS+=("callgrind run of $v failed, see $WORK/cg/")
      fi
    done
    # Where the difference goes: per function, (Ir_load - Ir_1) / (requests_load - 1)
    # of "on" less that of "off" (self cost; function names shortened).
    if [ "${IR_PER_REQ[on]}" != nan ] && [ "${IR_PER_REQ[off]}" != nan ] && command -v callgrind_annotate >/dev/null 2>&1; then
      for v in "${VARIANTS[@]}"; do
        cg_functions "$WORK/cg/$v-1" >"$WORK/cg/$v-1.functions.tsv"
        cg_functions "$WORK/cg/$v-load" >"$WORK/cg/$v-load.functions.tsv"
      done
      awk -F'\t' -v a1="${CG_N1[on]}" -v al="${CG_NL[on]}" -v b1="${CG_N1[off]}" -v bl="${CG_NL[off]}" '
        FILENAME ~ /on-1[.]/ { x1[$2] += $1; k[$2] = 1 }   FILENAME ~ /on-load[.]/ { xl[$2] += $1; k[$2] = 1 }
        FILENAME ~ /off-1[.]/ { y1[$2] += $1; k[$2] = 1 }  FILENAME ~ /off-load[.]/ { yl[$2] += $1; k[$2] = 1 }
        END {
          for (f in k) {
            on = (xl[f] - x1[f]) / (al - a1); off = (yl[f] - y1[f]) / (bl - b1); d = on - off
            name = f; gsub(/\(anonymous namespace\)::/, "", name); sub(/\(.*$/, "", name)
            if (d >= 10 || d <= -10) printf "%.0f\t%.0f\t%.0f\t%s\n", d, on, off, name
          }
        }' "$WORK/cg/on-1.functions.tsv" "$WORK/cg/on-load.functions.tsv" \
        "$WORK/cg/off-1.functions.tsv" "$WORK/cg/off-load.functions.tsv" | sort -t$'\t' -k1,1gr >"$WORK/cg/on-minus-off.tsv"
    fi
  else
    bench_warn "CALLGRIND=1 but valgrind is not installed"
  fi
fi

# ---------------------------------------------------------------- summary
declare -A CLEAN_ONLY CLEAN_COUNT
for v in "${VARIANTS[@]}"; do
  n=$(awk -F'\t' -v p="$v" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "noisy") k = i; next }
    $1 == p && $k == "no" { n++ } END { print n + 0 }' "$RUNS")
  if ((n > 0)); then CLEAN_ONLY[$v]=1; else CLEAN_ONLY[$v]=0; fi
  CLEAN_COUNT[$v]=$n
done
col() { # VARIANT COLUMN -> median over the clean runs (all runs if none is clean)
  awk -F'\t' -v p="$1" -v c="$2" -v clean="${CLEAN_ONLY[$1]}" '
    NR == 1 { for (i = 1; i <= NF; i++) { if ($i == c) k = i; if ($i == "noisy") q = i }; next }
    $1 == p && $k != "nan" && (!clean || $q == "no") { print $k }' "$RUNS" | bench_median
}
declare -A MED
METRICS=(rps p50_us p99_us cpu_us_per_req user_us_per_req sys_us_per_req proxy_cpu_pct origin_cpu_us_per_req core_proxy_busy_pct core_load_busy_pct steal_pct wrk_cpu_pct other_cpu_pct)
for v in "${VARIANTS[@]}"; do
  for m in "${METRICS[@]}"; do MED[$v.$m]=$(col "$v" "$m"); done
done
MED[on.log_lines_pct]=$(col on log_lines_pct)
MED[on.log_bytes_per_line]=$(col on log_bytes_per_line)
R_RPS=$(bench_ratio "${MED[on.rps]}" "${MED[off.rps]}")
R_P50=$(bench_ratio "${MED[on.p50_us]}" "${MED[off.p50_us]}")
R_P99=$(bench_ratio "${MED[on.p99_us]}" "${MED[off.p99_us]}")
R_CPU=$(bench_ratio "${MED[on.cpu_us_per_req]}" "${MED[off.cpu_us_per_req]}")
R_USER=$(bench_ratio "${MED[on.user_us_per_req]}" "${MED[off.user_us_per_req]}")
R_SYS=$(bench_ratio "${MED[on.sys_us_per_req]}" "${MED[off.sys_us_per_req]}")
# The same ratios round by round (the on and off runs of a round are back to
# back): their median and range show how far the ratio of the medians can be trusted.
paired() { # COLUMN -> "median min max" of on/off per round, over the rounds whose runs are both clean
  awk -F'\t' -v c="$1" 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == c) k = i; if ($i == "noisy") q = i }; next }
    $q == "no" && $k != "nan" { v[$1, $2] = $k; r[$2] = 1 }
    END { for (x in r) if ((("on", x) in v) && (("off", x) in v) && v["off", x] + 0 > 0) printf "%.4f\n", v["on", x] / v["off", x] }' "$RUNS" |
    sort -g | awk '{ a[++n] = $1 } END { if (!n) { print "nan nan nan"; exit }
      m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2; printf "%.3f %.3f %.3f\n", m, a[1], a[n] }'
}
read -r P_RPS P_RPS_MIN P_RPS_MAX < <(paired rps)
read -r P_CPU P_CPU_MIN P_CPU_MAX < <(paired cpu_us_per_req)
R_IR=$(bench_ratio "${IR_PER_REQ[on]}" "${IR_PER_REQ[off]}")
verdict() { # VALUE OP LIMIT
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "nan") { print "n/a"; exit }
    ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "met" : "NOT met" }'
}
V_RPS=$(verdict "$R_RPS" ">=" 0.95)
V_CPU=$(verdict "$R_CPU" "<=" 1.05)

ms() { awk -v u="$1" 'BEGIN { if (u == "nan") print "nan"; else printf "%.3f", u / 1000 }'; }
echo
echo "Cost of statistics + access logging, proxied path, 1 KiB body: $ROUNDS round(s) x $DURATION, wrk -t$THREADS -c$CONNECTIONS"
echo "(core $LOAD_CPU, with the origin), both Torii instances on core $PROXY_CPU."
echo "on  = JSON access log to $ACCESS_LOG_FS + statistics; off = access log off + stats.enabled false."
echo "Medians over the clean runs (on: ${CLEAN_COUNT[on]}, off: ${CLEAN_COUNT[off]}; all runs for a variant with none)."
echo "CPU = user+system of the instance's process tree (master + worker, all threads)."
echo
printf '| %-5s | %10s | %9s | %9s | %10s | %10s | %10s | %11s | %13s | %11s |\n' torii "req/s" "p50 ms" "p99 ms" "CPU us/req" "user us" "sys us" "proxy CPU %" "origin us/req" "user Ir/req"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------- ------------ ----------- ----------- ------------ ------------ ------------ ------------- --------------- -------------
for v in "${VARIANTS[@]}"; do
  printf '| %-5s | %10.0f | %9s | %9s | %10s | %10s | %10s | %11s | %13s | %11s |\n' "$v" "${MED[$v.rps]}" "$(ms "${MED[$v.p50_us]}")" \
    "$(ms "${MED[$v.p99_us]}")" "${MED[$v.cpu_us_per_req]}" "${MED[$v.user_us_per_req]}" "${MED[$v.sys_us_per_req]}" \
    "${MED[$v.proxy_cpu_pct]}" "${MED[$v.origin_cpu_us_per_req]}" "${IR_PER_REQ[$v]}"
done
echo
printf '| %-22s | %6s | %-9s | %s\n' "on / off" ratio target verdict
printf '|%s|%s|%s|%s\n' ------------------------ -------- ----------- --------
printf '| %-22s | %6s | %-9s | %s\n' "req/s" "$R_RPS" ">= 0.95" "$V_RPS; round by round: median $P_RPS, $P_RPS_MIN..$P_RPS_MAX"
printf '| %-22s | %6s | %-9s | %s\n' "CPU us/request" "$R_CPU" "<= 1.05" "$V_CPU; round by round: median $P_CPU, $P_CPU_MIN..$P_CPU_MAX"
printf '| %-22s | %6s | %-9s | %s\n' "  user CPU us/request" "$R_USER" "-" "-"
printf '| %-22s | %6s | %-9s | %s\n' "  sys CPU us/request" "$R_SYS" "-" "-"
printf '| %-22s | %6s | %-9s | %s\n' "p50 latency" "$R_P50" "-" "-"
printf '| %-22s | %6s | %-9s | %s\n' "p99 latency" "$R_P99" "-" "-"
[ "${CALLGRIND:-0}" = 1 ] && printf '| %-22s | %6s | %-9s | %s\n' "user instr./request" "$R_IR" "-" "on ${IR_PER_REQ[on]}, off ${IR_PER_REQ[off]} (callgrind)"
if [ -s "$WORK/syscalls-on-per-req.txt" ] && [ -s "$WORK/syscalls-off-per-req.txt" ]; then
  echo
  echo "System calls per request (PERF=1 run, perf stat on tracepoints, all threads; approximate for small counts):"
  printf '| %-14s | %8s | %8s |\n' syscall on off
  printf '|%s|%s|%s|\n' ---------------- ---------- ----------
  join -a1 -a2 -e - -o 0,1.2,2.2 <(sort "$WORK/syscalls-on-per-req.txt") <(sort "$WORK/syscalls-off-per-req.txt") |
    awk '$2 != "0.000" || $3 != "0.000"' | sort -k2 -gr |
    while read -r name a b; do printf '| %-14s | %8s | %8s |\n' "$name" "$a" "$b"; done | tee "$WORK/syscalls-per-req.md"
  for v in "${VARIANTS[@]}"; do
    echo "perf, $v: DSOs: $(awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 } NR == 5 { exit }' "$WORK/perf-$v-dso.txt")"
  done
fi
if [ "${CALLGRIND_SPLIT:-0}" = 1 ]; then
  echo
  echo "User-space instructions per request of the worker, each part alone (callgrind):"
  for v in "${CG_VARIANTS[@]}"; do
    printf '  %-18s %8s  (%s vs off)\n' "$v" "${IR_PER_REQ[$v]:-nan}" \
      "$(awk -v a="${IR_PER_REQ[$v]:-nan}" -v b="${IR_PER_REQ[off]}" 'BEGIN { if (a == "nan" || b == "nan") print "n/a"; else printf "%+d", a - b }')"
  done
fi
if [ -s "$WORK/cg/on-minus-off.tsv" ]; then
  echo
  echo "User-space instructions per request, on - off, by function (callgrind, self cost, |difference| >= 10; $WORK/cg/on-minus-off.tsv):"
  printf '| %8s | %8s | %8s | %s\n' "on-off" on off function
  printf '|%s|%s|%s|%s\n' ---------- ---------- ---------- ----------
  head -n "${CG_TOP:-15}" "$WORK/cg/on-minus-off.tsv" | awk -F'\t' '{ printf "| %8s | %8s | %8s | %s\n", $1, $2, $3, substr($4, 1, 90) }'
fi
echo
echo "Access log: median ${MED[on.log_lines_pct]} lines per 100 requests, ${MED[on.log_bytes_per_line]} bytes per line."
echo "/metrics at the end: torii_requests_total = $METRICS_REQ_ON (on; wrk reported $WRK_REQ_ON in the measured runs), $METRICS_REQ_OFF (off)."
NOISY_RUNS=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "noisy") k = i; next } $k == "yes" { n++ } END { print n + 0 }' "$RUNS")
TOTAL_RUNS=$(($(wc -l <"$RUNS") - 1))
echo "Machine noise: median CPU of other processes during the runs used ${MED[on.other_cpu_pct]}% (on) / ${MED[off.other_cpu_pct]}% (off) of one core;"
echo "$NOISY_RUNS of $TOTAL_RUNS runs had more than $NOISY_PCT% (marked noisy). Load average $LOADAVG_START at start, $LOADAVG_END at end."
echo
echo "Every run:"
column -t -s $'\t' "$RUNS" 2>/dev/null || cat "$RUNS"
echo
if ((${#PROBLEMS[@]})); then
  echo "PROBLEMS:"
  for x in "${PROBLEMS[@]}"; do echo "  - $x"; done
  echo
fi

# ---------------------------------------------------------------- JSON
j() { [ "$1" = nan ] && echo null || echo "$1"; }
{
  printf '{\n  "benchmark": "observability",\n  "timestamp": %s,\n' "$(bench_json_str "$(date -Iseconds)")"
  printf '  "command": %s,\n  "machine": %s,\n' "$(bench_json_str "$COMMAND")" "$(bench_json_str "$MACHINE")"
  printf '  "loadavg_start": %s,\n  "loadavg_end": %s,\n' "$(bench_json_str "$LOADAVG_START")" "$(bench_json_str "$LOADAVG_END")"
  printf '  "git": {"rev": %s, "dirty": %s, "modified_files": %s},\n' "$(bench_json_str "$GIT_REV")" "$GIT_DIRTY" \
    "$(bench_json_str "$GIT_DIRTY_FILES")"
  printf '  "torii": {"bin": %s, "version": %s, "build_type": %s, "sha256_prefix": %s},\n' "$(bench_json_str "$TORII_BIN")" \
    "$(bench_json_str "$TORII_VERSION")" "$(bench_json_str "${TORII_BUILD_TYPE:-unknown}")" "$(bench_json_str "$TORII_SHA")"
  printf '  "origin_nginx_version": %s,\n  "wrk_version": %s,\n' "$(bench_json_str "$NGINX_VERSION")" "$(bench_json_str "$WRK_VERSION")"
  printf '  "variants": {"on": %s, "off": %s},\n' \
    "$(bench_json_str "access_log json to a file ($ACCESS_LOG_FS), stats enabled")" \
    "$(bench_json_str "access_log off, stats.enabled false")"
  printf '  "params": {"rounds": %d, "duration": "%s", "warmup": "%s", "threads": %d, "connections": %d, "body_bytes": %d, "proxy_cpu": %d, "load_cpu": %d, "clk_tck": %d},\n' \
    "$ROUNDS" "$DURATION" "$WARMUP" "$THREADS" "$CONNECTIONS" "$BODY_BYTES" "$PROXY_CPU" "$LOAD_CPU" "$CLK_TCK"
  printf '  "median": {\n'
  first=1
  for v in "${VARIANTS[@]}"; do
    ((first)) || printf ',\n'
    first=0
    printf '    "%s": {' "$v"
    sep=""
    for m in "${METRICS[@]}"; do
      printf '%s"%s": %s' "$sep" "$m" "$(j "${MED[$v.$m]}")"
      sep=", "
    done
    printf '}'
  done
  printf '\n  },\n'
  printf '  "ratio_on_over_off": {"rps": %s, "p50": %s, "p99": %s, "cpu_us_per_req": %s, "user_us_per_req": %s, "sys_us_per_req": %s, "user_instructions_per_req": %s},\n' \
    "$(j "$R_RPS")" "$(j "$R_P50")" "$(j "$R_P99")" "$(j "$R_CPU")" "$(j "$R_USER")" "$(j "$R_SYS")" "$(j "$R_IR")"
  printf '  "ratio_on_over_off_per_round": {"rps": {"median": %s, "min": %s, "max": %s}, "cpu_us_per_req": {"median": %s, "min": %s, "max": %s}},\n' \
    "$(j "$P_RPS")" "$(j "$P_RPS_MIN")" "$(j "$P_RPS_MAX")" "$(j "$P_CPU")" "$(j "$P_CPU_MIN")" "$(j "$P_CPU_MAX")"
  printf '  "callgrind_user_instructions_per_request": {'
  sep=""
  for v in "${CG_VARIANTS[@]}"; do
    printf '%s"%s": %s' "$sep" "$v" "$(j "${IR_PER_REQ[$v]:-nan}")"
    sep=", "
  done
  printf '},\n' 
  printf '  "targets": {"rps_ratio_min": 0.95, "cpu_us_per_req_ratio_max": 1.05, "rps": "%s", "cpu": "%s"},\n' "$V_RPS" "$V_CPU"
  printf '  "checks": {"access_log_lines_per_100_requests_median": %s, "access_log_bytes_per_line_median": %s, "access_log_lines_min_pct": %s, "metrics_requests_total_on": %s, "metrics_requests_total_off": %s, "wrk_requests_on_measured": %s, "torii_log_lines": {"on": %s, "off": %s}},\n' \
    "$(j "${MED[on.log_lines_pct]}")" "$(j "${MED[on.log_bytes_per_line]}")" "$LOG_LINES_MIN_PCT" \
    "$([[ $METRICS_REQ_ON =~ ^[0-9]+$ ]] && echo "$METRICS_REQ_ON" || echo null)" \
    "$([[ $METRICS_REQ_OFF =~ ^[0-9]+$ ]] && echo "$METRICS_REQ_OFF" || echo null)" \
    "$WRK_REQ_ON" "${TORII_LOG_LINES[on]}" "${TORII_LOG_LINES[off]}"
  printf '  "noisy_runs": %d,\n  "noisy_pct": %s,\n' "$NOISY_RUNS" "$NOISY_PCT"
  printf '  "median_over": {"on": "%s", "off": "%s"},\n' \
    "$([ "${CLEAN_ONLY[on]}" = 1 ] && echo "${CLEAN_COUNT[on]} clean runs" || echo "all runs")" \
    "$([ "${CLEAN_ONLY[off]}" = 1 ] && echo "${CLEAN_COUNT[off]} clean runs" || echo "all runs")"
  printf '  "runs": [\n'
  bench_json_runs_and_status "$RUNS"
} >"$SUMMARY"
if command -v jq >/dev/null 2>&1; then jq empty "$SUMMARY" || bench_warn "summary is not valid JSON: $SUMMARY"; fi
echo "summary: $SUMMARY"
echo "work dir: $WORK"
echo "command: $COMMAND"
exit "$FAILED"
