#!/usr/bin/env bash
# bench/proxy_bench.sh: the proxied-path benchmark, Torii vs nginx, side by side.
#
# One nginx origin answers GET / with a fixed 1 KiB body. Two reverse proxies
# in front of it, each with one worker pinned to the same core: nginx (A) and
# Torii (B). wrk drives each proxy in turn over keep-alive connections, in
# interleaved rounds A, B, A, B, ... and the script prints the medians of
# req/s, p50/p99 latency and proxy CPU time per request (user+system of the
# proxy's whole process tree, from /proc), and the Torii/nginx ratios.
#
# Usage:   bench/proxy_bench.sh                 # full: 3 rounds of 10 s each
#          QUICK=1 bench/proxy_bench.sh         # smoke test: 1 round of 3 s
#          ROUNDS=5 DURATION=10s bench/proxy_bench.sh
#
# Environment (defaults in brackets):
#   ROUNDS [3]        interleaved rounds (>= 3 unless QUICK=1)
#   DURATION [10s]    wrk -d of each measured run
#   WARMUP [2s]       wrk -d of the warm-up run of each proxy
#   CONNECTIONS [64]  wrk -c      THREADS [1]  wrk -t
#   BODY_BYTES [1024] size of the origin's response body
#   PROXY_CPU [0]     core for both proxies (taskset -c)
#   LOAD_CPU [1]      core for wrk and the origin
#   PORT_BASE [18600] first port tried for origin/nginx/torii (free ones are picked)
#   TORII_BIN         torii binary; if unset, build-bench/ is configured with
#                     -DCMAKE_BUILD_TYPE=Release and built (incrementally)
#   TORII_BUILD_DIR [<repo>/build-bench]   NGINX_BIN [nginx on PATH]
#   RESULTS_DIR [<repo>/bench/results]
#   QUIET_MAX_PCT [15] before each run, wait until the whole machine was busy
#   QUIET_WAIT [120]  less than QUIET_MAX_PCT % of one core over 1 s, for at most
#                     QUIET_WAIT s (other people's builds and tests skew the
#                     numbers); then run anyway and say so. QUIET_MAX_PCT=0: no wait
#   NOISY_PCT [10]    a run during which processes other than the proxy, origin
#                     and wrk used more than this % of one core is marked noisy;
#   NOISY_RETRIES [2] it is repeated up to this many times. Medians are taken
#                     over the clean runs (all runs if a proxy has none); the
#                     noisy ones stay in the per-run table and the JSON
#   PERF=1            after the rounds, one extra unrecorded run per proxy under
#                     perf record (cpu-clock, call graphs); top functions go to
#                     <work dir>/perf-<proxy>-top.txt. PERF_FREQ [999] PERF_TOP [40]
#   CALLGRIND=1       after the rounds, user-space instructions per request of
#                     each proxy's worker under valgrind --tool=callgrind (fresh
#                     instances, 1 request vs CALLGRIND_DURATION [5s] of load)
#   QUICK=1           ROUNDS=1 DURATION=3s WARMUP=1s QUIET_WAIT=10, for a smoke test
#
# Output: the tables on stdout; bench/results/proxy-<timestamp>.json (summary
# and every run), bench/results/proxy-<timestamp>/ (configs, logs, raw wrk
# outputs). Exit status: 0 if every run was clean, 1 if a run had socket
# errors or non-2xx responses or a proxy died (the targets do not change it).
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
PORT_BASE=${PORT_BASE:-18600}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}
TORII_BUILD_DIR=${TORII_BUILD_DIR:-$REPO/build-bench}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}

bench_check_run_parameters

COMMAND="ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS"
[ "${QUICK:-0}" = 1 ] && COMMAND="QUICK=1 $COMMAND"
[ -n "${TORII_BIN:-}" ] && COMMAND="$COMMAND TORII_BIN=$TORII_BIN"
COMMAND="$COMMAND bench/proxy_bench.sh"

bench_require wrk taskset curl awk sort cmp timeout getconf
[ -x "$NGINX_BIN" ] || bench_die "nginx not found (set NGINX_BIN)"
bench_check_cores proxy

# ---------------------------------------------------------------- torii binary
bench_build_torii

# ---------------------------------------------------------------- work dir
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$RESULTS_DIR"
WORK="$RESULTS_DIR/proxy-$STAMP"
SUMMARY="$RESULTS_DIR/proxy-$STAMP.json"
mkdir -p "$WORK"/{origin-tmp,nginx-proxy-tmp,wrk}
chmod 755 "$WORK" "$WORK"/origin-tmp "$WORK"/nginx-proxy-tmp # nginx workers may run as nobody
RUNS="$WORK/runs.tsv"
PROBLEMS=()

# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
  local rc=$1
  if ((rc != 0)); then bench_log "work dir (configs, logs, wrk outputs): $WORK"; fi
}
bench_install_traps on_exit

# ---------------------------------------------------------------- configs
ORIGIN_PORT=$(bench_pick_port "$PORT_BASE") || bench_die "no free port"
NGINX_PORT=$(bench_pick_port $((ORIGIN_PORT + 1)) "$ORIGIN_PORT") || bench_die "no free port"
TORII_PORT=$(bench_pick_port $((NGINX_PORT + 1)) "$ORIGIN_PORT" "$NGINX_PORT") || bench_die "no free port"

# A fixed body: hex digits, no character nginx would treat specially.
BODY=$(awk -v n="$BODY_BYTES" 'BEGIN { s = ""; while (length(s) < n) s = s "0123456789abcdef"; printf "%s", substr(s, 1, n) }')
printf '%s' "$BODY" >"$WORK/expected-body"

bench_render "$BENCH_DIR/nginx-origin.conf.tmpl" "$WORK/origin.conf" \
  DIR="$WORK" ORIGIN_PORT="$ORIGIN_PORT" BODY="$BODY"
bench_render "$BENCH_DIR/nginx-proxy.conf.tmpl" "$WORK/nginx-proxy.conf" \
  DIR="$WORK" ORIGIN_PORT="$ORIGIN_PORT" PROXY_PORT="$NGINX_PORT"
bench_render "$BENCH_DIR/torii-proxy.json.tmpl" "$WORK/torii.json" \
  ORIGIN_PORT="$ORIGIN_PORT" PROXY_PORT="$TORII_PORT"

"$NGINX_BIN" -t -q -p "$WORK" -c "$WORK/origin.conf" >"$WORK/origin-t.log" 2>&1 ||
  { cat "$WORK/origin-t.log" >&2; bench_die "origin config rejected"; }
"$NGINX_BIN" -t -q -p "$WORK" -c "$WORK/nginx-proxy.conf" >"$WORK/nginx-proxy-t.log" 2>&1 ||
  { cat "$WORK/nginx-proxy-t.log" >&2; bench_die "nginx proxy config rejected"; }
"$TORII_BIN" -t -c "$WORK/torii.json" >"$WORK/torii-t.log" 2>&1 ||
  { cat "$WORK/torii-t.log" >&2; bench_die "torii config rejected"; }

# ---------------------------------------------------------------- start
bench_log "origin 127.0.0.1:$ORIGIN_PORT (core $LOAD_CPU), nginx 127.0.0.1:$NGINX_PORT, torii 127.0.0.1:$TORII_PORT (core $PROXY_CPU)"
bench_start origin "$LOAD_CPU" "$WORK/origin.log" "$NGINX_BIN" -p "$WORK" -c "$WORK/origin.conf"
ORIGIN_PID=$BENCH_LAST_PID
bench_start nginx "$PROXY_CPU" "$WORK/nginx-proxy.log" "$NGINX_BIN" -p "$WORK" -c "$WORK/nginx-proxy.conf"
NGINX_PID=$BENCH_LAST_PID
bench_start torii "$PROXY_CPU" "$WORK/torii.log" "$TORII_BIN" -c "$WORK/torii.json"
TORII_PID=$BENCH_LAST_PID

declare -A PID_OF=([nginx]=$NGINX_PID [torii]=$TORII_PID)
declare -A PORT_OF=([nginx]=$NGINX_PORT [torii]=$TORII_PORT)
declare -A LOG_OF=([nginx]="$WORK/nginx-proxy-error.log" [torii]="$WORK/torii.log")

bench_wait_port 127.0.0.1 "$ORIGIN_PORT" 10 "$ORIGIN_PID" ||
  { cat "$WORK/origin.log" "$WORK/origin-error.log" >&2 2>/dev/null; bench_die "origin did not start"; }
for p in nginx torii; do
  bench_wait_port 127.0.0.1 "${PORT_OF[$p]}" 10 "${PID_OF[$p]}" ||
    { tail -n 50 "${LOG_OF[$p]}" "$WORK/$p"*.log >&2 2>/dev/null; bench_die "$p did not start"; }
done

# Correctness first: each path must give 200 and exactly the origin's body.
check_body() { # NAME PORT
  local code
  code=$(curl -sS --max-time 5 -o "$WORK/check-$1.body" -w '%{http_code}' "http://127.0.0.1:$2/") ||
    bench_die "$1: curl failed"
  [ "$code" = 200 ] || bench_die "$1: GET / answered $code, want 200"
  cmp -s "$WORK/check-$1.body" "$WORK/expected-body" ||
    bench_die "$1: body differs from the origin's ($(wc -c <"$WORK/check-$1.body") bytes, want $BODY_BYTES)"
}
check_body origin "$ORIGIN_PORT"
check_body nginx "$NGINX_PORT"
check_body torii "$TORII_PORT"
curl -sS --max-time 5 -D "$WORK/headers-nginx.txt" -o /dev/null "http://127.0.0.1:$NGINX_PORT/"
curl -sS --max-time 5 -D "$WORK/headers-torii.txt" -o /dev/null "http://127.0.0.1:$TORII_PORT/"

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
bench_log "torii: $TORII_BIN ($TORII_VERSION, ${TORII_BUILD_TYPE:-build type unknown}, sha256 $TORII_SHA...); nginx $NGINX_VERSION; wrk $WRK_VERSION"
bench_log "tree of torii: $(bench_tree_pids "$TORII_PID" | tr '\n' ' ')"
bench_log "tree of nginx: $(bench_tree_pids "$NGINX_PID" | tr '\n' ' ')"

# ---------------------------------------------------------------- runs
URL_OF() { echo "http://127.0.0.1:${PORT_OF[$1]}/"; }
printf 'proxy\tround\t%s\n' "$BENCH_RUN_COLUMNS" >"$RUNS"
FAILED=0

# run_one PROXY ROUND DURATION: one wrk run against PROXY (bench_measure_run);
# ROUND "warmup" is not recorded.
run_one() {
  local proxy=$1 round=$2 dur=$3
  bench_measure_run "$proxy" "$round" "$dur" "$(URL_OF "$proxy")" "${PID_OF[$proxy]}" "${LOG_OF[$proxy]}" || return 1
  if [ "$round" = warmup ]; then
    bench_log "warm-up $proxy: $BR_RPS req/s"
  else
    printf '%s\t%s\t%s\n' "$proxy" "$round" "$(bench_run_fields)" >>"$RUNS"
    bench_log "$(printf 'round %s %-5s %9s req/s  p50 %6.0f us  p99 %6.0f us  cpu %6s us/req  proxy cpu %5s%%  core%s %s%%  core%s %s%%  other %s%%%s' \
      "$round" "$proxy" "$BR_RPS" "$BR_P50" "$BR_P99" "$BR_CPU_US" "$BR_UTIL" "$PROXY_CPU" "$BR_CORE_P" "$LOAD_CPU" "$BR_CORE_L" "$BR_OTHER" \
      "$([ "$BR_NOISY" = yes ] && echo '  NOISY')")"
  fi
}

bench_log "warm-up: $WARMUP per proxy"
run_one nginx warmup "$WARMUP" || true
run_one torii warmup "$WARMUP" || true
bench_log "measuring: $ROUNDS round(s) of $DURATION, -t$THREADS -c$CONNECTIONS, order nginx, torii"
bench_run_rounds run_one "$ROUNDS" "$DURATION" nginx torii
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

SYSCALLS=(epoll_wait epoll_pwait epoll_ctl read readv recvfrom recvmsg write writev sendto sendmsg
  accept4 close connect setsockopt getsockopt ioctl getpid clock_gettime)
# Optional profile: one extra, unrecorded run per proxy under `perf record`
# (software cpu-clock event, so it works in VMs without hardware counters).
if [ "${PERF:-0}" = 1 ]; then
  if command -v perf >/dev/null 2>&1; then
    for p in nginx torii; do
      pids=$(bench_tree_pids "${PID_OF[$p]}" | paste -sd, -)
      bench_log "perf: profiling $p ($pids) for $DURATION"
      perf record -q -e cpu-clock -F "${PERF_FREQ:-999}" -g -p "$pids" -o "$WORK/perf-$p.data" \
        >"$WORK/perf-$p.log" 2>&1 &
      perf_pid=$!
      BENCH_PIDS+=("$perf_pid")
      BENCH_STOP_SIG[$perf_pid]=INT
      sleep 0.5
      bench_wrk "$WORK/wrk/$p-perf.txt" "$LOAD_CPU" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$(URL_OF "$p")" || true
      bench_stop "$perf_pid" 30 INT
      perf report -i "$WORK/perf-$p.data" --no-children --sort sym --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n "${PERF_TOP:-40}" >"$WORK/perf-$p-top.txt" || true
      perf report -i "$WORK/perf-$p.data" --no-children --sort dso --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n 15 >"$WORK/perf-$p-dso.txt" || true
      bench_log "perf: $p top functions in $WORK/perf-$p-top.txt"

      # System calls per request, counted on tracepoints (cheap).
      evs=raw_syscalls:sys_enter
      tracepoints=$(perf list tracepoint 2>/dev/null || true)
      for sc in "${SYSCALLS[@]}"; do
        if grep -q "syscalls:sys_enter_$sc " <<<"$tracepoints"; then evs="$evs,syscalls:sys_enter_$sc"; fi
      done
      perf stat -x, -e "$evs" -p "$pids" -o "$WORK/syscalls-$p.csv" >/dev/null 2>&1 &
      perf_pid=$!
      BENCH_PIDS+=("$perf_pid")
      BENCH_STOP_SIG[$perf_pid]=INT
      sleep 0.5
      bench_wrk "$WORK/wrk/$p-syscalls.txt" "$LOAD_CPU" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$(URL_OF "$p")" || true
      sleep 0.2
      bench_stop "$perf_pid" 10 INT
      n=$(bench_wrk_field "$(bench_wrk_parse "$WORK/wrk/$p-syscalls.txt")" requests)
      awk -F, -v n="$n" '/^[0-9]/ { name = $3; sub(/^(raw_)?syscalls:sys_enter_?/, "", name); if (name == "") name = "all"
          printf "%s %.3f\n", name, $1 / n }' "$WORK/syscalls-$p.csv" >"$WORK/syscalls-$p-per-req.txt"
    done
    echo
    echo "System calls per request (PERF=1 run, perf stat on tracepoints; the extra idle connections and"
    echo "the few seconds around the run are included, so small counts are approximate):"
    printf '| %-14s | %8s | %8s |\n' syscall nginx torii
    printf '|%s|%s|%s|\n' ---------------- ---------- ----------
    join -a1 -a2 -e - -o 0,1.2,2.2 <(sort "$WORK/syscalls-nginx-per-req.txt") <(sort "$WORK/syscalls-torii-per-req.txt") |
      awk '$2 != "0.000" || $3 != "0.000"' | sort -k3 -gr |
      while read -r name a b; do printf '| %-14s | %8s | %8s |\n' "$name" "$a" "$b"; done | tee "$WORK/syscalls-per-req.md"
    echo
  else
    bench_warn "PERF=1 but perf is not installed (apt-get install linux-perf)"
  fi
fi

# Torii's log at level warn should be empty in a clean run.
TORII_LOG_LINES=$(grep -c . "$WORK/torii.log" || true)
TORII_LOG_ERRORS=$(grep -c 'level=error' "$WORK/torii.log" || true)
if ((TORII_LOG_LINES > 0)); then
  bench_warn "torii wrote $TORII_LOG_LINES log line(s) at level >= warn ($TORII_LOG_ERRORS error); first ones:"
  head -n 10 "$WORK/torii.log" >&2
  ((TORII_LOG_ERRORS == 0)) || PROBLEMS+=("torii logged $TORII_LOG_ERRORS error line(s), see $WORK/torii.log")
fi
NGINX_LOG_LINES=$(grep -c . "$WORK/nginx-proxy-error.log" 2>/dev/null || true)
((NGINX_LOG_LINES == 0)) || bench_warn "nginx proxy wrote $NGINX_LOG_LINES error-log line(s): $WORK/nginx-proxy-error.log"

# Optional: user-space instructions per request under callgrind, for each
# proxy: a fresh instance (on its own port) serves 1 request, another serves
# CALLGRIND_DURATION of wrk load; the difference of the worker's instruction
# counts over the difference of requests cancels start-up and shutdown.
# Deterministic, so immune to the machine's noise; kernel work is not counted.
declare -A IR_PER_REQ=([nginx]=nan [torii]=nan)
callgrind_run() { # PROXY DIR LOAD(0|1): sets CG_RESULT="ir requests" (no subshell: the traps must see the PIDs)
  local p=$1 dir=$2 load=$3 port n master
  mkdir -p "$dir"
  chmod 777 "$dir" # nginx's worker (user nobody under root) writes its own file
  if [ "$p" = nginx ]; then
    port=$CG_NGINX_PORT
    bench_start "cg-$p" "$PROXY_CPU" "$dir/log" valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
      "$NGINX_BIN" -p "$WORK/cg" -c "$WORK/cg/nginx-proxy.conf"
  else
    port=$CG_TORII_PORT
    bench_start "cg-$p" "$PROXY_CPU" "$dir/log" valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
      "$TORII_BIN" -c "$WORK/cg/torii.json"
  fi
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
  bench_stop "$master" 60
  CG_RESULT="$(bench_callgrind_worker_ir "$dir" "$master") $n"
}
if [ "${CALLGRIND:-0}" = 1 ]; then
  if command -v valgrind >/dev/null 2>&1; then
    CALLGRIND_DURATION=${CALLGRIND_DURATION:-5s}
    mkdir -p "$WORK"/cg/nginx-proxy-tmp
    chmod 755 "$WORK"/cg "$WORK"/cg/nginx-proxy-tmp
    CG_NGINX_PORT=$(bench_pick_port $((TORII_PORT + 1)) "$ORIGIN_PORT" "$NGINX_PORT" "$TORII_PORT")
    CG_TORII_PORT=$(bench_pick_port $((CG_NGINX_PORT + 1)) "$ORIGIN_PORT" "$NGINX_PORT" "$TORII_PORT" "$CG_NGINX_PORT")
    bench_render "$BENCH_DIR/nginx-proxy.conf.tmpl" "$WORK/cg/nginx-proxy.conf" \
      DIR="$WORK/cg" ORIGIN_PORT="$ORIGIN_PORT" PROXY_PORT="$CG_NGINX_PORT"
    bench_render "$BENCH_DIR/torii-proxy.json.tmpl" "$WORK/cg/torii.json" \
      ORIGIN_PORT="$ORIGIN_PORT" PROXY_PORT="$CG_TORII_PORT"
    for p in nginx torii; do
      bench_log "callgrind: $p, 1 request, then $CALLGRIND_DURATION of load"
      if callgrind_run "$p" "$WORK/cg/$p-1" 0 && one=$CG_RESULT &&
        callgrind_run "$p" "$WORK/cg/$p-load" 1 && many=$CG_RESULT; then
        IR_PER_REQ[$p]=$(awk -v a="$one" -v b="$many" 'BEGIN { split(a, x, " "); split(b, y, " ")
          if (y[2] - x[2] <= 0 || x[1] == 0 || y[1] == 0) print "nan"; else printf "%.0f\n", (y[1] - x[1]) / (y[2] - x[2]) }')
        bench_log "callgrind: $p worker: $one (Ir requests) / $many -> ${IR_PER_REQ[$p]} instructions/request"
      else
        PROBLEMS+=("callgrind run of $p failed, see $WORK/cg/")
      fi
    done
  else
    bench_warn "CALLGRIND=1 but valgrind is not installed"
  fi
fi

# ---------------------------------------------------------------- summary
declare -A CLEAN_ONLY CLEAN_COUNT
for p in nginx torii; do
  n=$(awk -F'\t' -v p="$p" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "noisy") k = i; next }
    $1 == p && $k == "no" { n++ } END { print n + 0 }' "$RUNS")
  if ((n > 0)); then CLEAN_ONLY[$p]=1; else CLEAN_ONLY[$p]=0; fi
  CLEAN_COUNT[$p]=$n
done
col() { # PROXY COLUMN -> median over the clean runs (all runs if none is clean)
  awk -F'\t' -v p="$1" -v c="$2" -v clean="${CLEAN_ONLY[$1]}" '
    NR == 1 { for (i = 1; i <= NF; i++) { if ($i == c) k = i; if ($i == "noisy") q = i }; next }
    $1 == p && $k != "nan" && (!clean || $q == "no") { print $k }' "$RUNS" | bench_median
}
declare -A MED
METRICS=(rps p50_us p99_us cpu_us_per_req proxy_cpu_pct origin_cpu_us_per_req core_proxy_busy_pct core_load_busy_pct steal_pct wrk_cpu_pct other_cpu_pct)
for p in nginx torii; do
  for m in "${METRICS[@]}"; do MED[$p.$m]=$(col "$p" "$m"); done
done
R_RPS=$(bench_ratio "${MED[torii.rps]}" "${MED[nginx.rps]}")
R_P50=$(bench_ratio "${MED[torii.p50_us]}" "${MED[nginx.p50_us]}")
R_P99=$(bench_ratio "${MED[torii.p99_us]}" "${MED[nginx.p99_us]}")
R_CPU=$(bench_ratio "${MED[torii.cpu_us_per_req]}" "${MED[nginx.cpu_us_per_req]}")
verdict() { # VALUE OP LIMIT
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "nan") { print "n/a"; exit }
    ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "met" : "NOT met" }'
}
V_CPU=$(verdict "$R_CPU" "<=" 0.8)
V_RPS=$(verdict "$R_RPS" ">=" 1.0)
V_P99=$(verdict "$R_P99" "<=" 1.0)

ms() { awk -v u="$1" 'BEGIN { if (u == "nan") print "nan"; else printf "%.3f", u / 1000 }'; }
echo
echo "Proxied path, 1 KiB body: $ROUNDS round(s) x $DURATION, wrk -t$THREADS -c$CONNECTIONS (core $LOAD_CPU, with the origin), proxies on core $PROXY_CPU"
echo "Medians over the clean runs (nginx: ${CLEAN_COUNT[nginx]}, torii: ${CLEAN_COUNT[torii]}; all runs for a proxy with none)."
echo "CPU = user+system of the proxy's process tree (master + worker)."
echo
printf '| %-6s | %10s | %9s | %9s | %13s | %14s | %16s |\n' proxy "req/s" "p50 ms" "p99 ms" "CPU us/req" "proxy CPU %" "origin us/req"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' -------- ------------ ----------- ----------- --------------- ---------------- ------------------
for p in nginx torii; do
  printf '| %-6s | %10.0f | %9s | %9s | %13s | %14s | %16s |\n' "$p" "${MED[$p.rps]}" "$(ms "${MED[$p.p50_us]}")" \
    "$(ms "${MED[$p.p99_us]}")" "${MED[$p.cpu_us_per_req]}" "${MED[$p.proxy_cpu_pct]}" "${MED[$p.origin_cpu_us_per_req]}"
done
echo
printf '| %-22s | %6s | %-9s | %s\n' "Torii / nginx" ratio target verdict
printf '|%s|%s|%s|%s\n' ------------------------ -------- ----------- --------
printf '| %-22s | %6s | %-9s | %s\n' "req/s" "$R_RPS" ">= 1.0" "$V_RPS"
printf '| %-22s | %6s | %-9s | %s\n' "p99 latency" "$R_P99" "<= 1.0" "$V_P99"
printf '| %-22s | %6s | %-9s | %s\n' "CPU us/request" "$R_CPU" "<= 0.8" "$V_CPU"
printf '| %-22s | %6s | %-9s | %s\n' "p50 latency" "$R_P50" "-" "-"
if [ "${CALLGRIND:-0}" = 1 ]; then
  R_IR=$(bench_ratio "${IR_PER_REQ[torii]}" "${IR_PER_REQ[nginx]}")
  printf '| %-22s | %6s | %-9s | %s\n' "user instr./request" "$R_IR" "-" "nginx ${IR_PER_REQ[nginx]}, torii ${IR_PER_REQ[torii]} (callgrind)"
fi
echo
NOISY_RUNS=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "noisy") k = i; next } $k == "yes" { n++ } END { print n + 0 }' "$RUNS")
TOTAL_RUNS=$(($(wc -l <"$RUNS") - 1))
echo "Machine noise: median CPU of other processes during the runs used ${MED[nginx.other_cpu_pct]}% (nginx runs) / ${MED[torii.other_cpu_pct]}% (torii runs) of one core;"
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
{
  printf '{\n  "benchmark": "proxy",\n  "timestamp": %s,\n' "$(bench_json_str "$(date -Iseconds)")"
  printf '  "command": %s,\n  "machine": %s,\n' "$(bench_json_str "$COMMAND")" "$(bench_json_str "$MACHINE")"
  printf '  "loadavg_start": %s,\n  "loadavg_end": %s,\n' "$(bench_json_str "$LOADAVG_START")" "$(bench_json_str "$LOADAVG_END")"
  printf '  "git": {"rev": %s, "dirty": %s, "modified_files": %s},\n' "$(bench_json_str "$GIT_REV")" "$GIT_DIRTY" \
    "$(bench_json_str "$GIT_DIRTY_FILES")"
  printf '  "torii": {"bin": %s, "version": %s, "build_type": %s, "sha256_prefix": %s},\n' "$(bench_json_str "$TORII_BIN")" \
    "$(bench_json_str "$TORII_VERSION")" "$(bench_json_str "${TORII_BUILD_TYPE:-unknown}")" "$(bench_json_str "$TORII_SHA")"
  printf '  "nginx_version": %s,\n  "wrk_version": %s,\n' "$(bench_json_str "$NGINX_VERSION")" "$(bench_json_str "$WRK_VERSION")"
  printf '  "params": {"rounds": %d, "duration": "%s", "warmup": "%s", "threads": %d, "connections": %d, "body_bytes": %d, "proxy_cpu": %d, "load_cpu": %d, "clk_tck": %d},\n' \
    "$ROUNDS" "$DURATION" "$WARMUP" "$THREADS" "$CONNECTIONS" "$BODY_BYTES" "$PROXY_CPU" "$LOAD_CPU" "$CLK_TCK"
  printf '  "median": {\n'
  first=1
  for p in nginx torii; do
    ((first)) || printf ',\n'
    first=0
    printf '    "%s": {' "$p"
    sep=""
    for m in "${METRICS[@]}"; do
      v=${MED[$p.$m]}
      [ "$v" = nan ] && v=null
      printf '%s"%s": %s' "$sep" "$m" "$v"
      sep=", "
    done
    printf '}'
  done
  printf '\n  },\n'
  j() { [ "$1" = nan ] && echo null || echo "$1"; }
  printf '  "ratio_torii_over_nginx": {"rps": %s, "p50": %s, "p99": %s, "cpu_us_per_req": %s},\n' \
    "$(j "$R_RPS")" "$(j "$R_P50")" "$(j "$R_P99")" "$(j "$R_CPU")"
  printf '  "callgrind_user_instructions_per_request": {"nginx": %s, "torii": %s},\n' \
    "$(j "${IR_PER_REQ[nginx]}")" "$(j "${IR_PER_REQ[torii]}")"
  printf '  "targets": {"cpu_us_per_req_ratio_max": 0.8, "rps_ratio_min": 1.0, "p99_ratio_max": 1.0, "cpu": "%s", "rps": "%s", "p99": "%s"},\n' \
    "$V_CPU" "$V_RPS" "$V_P99"
  printf '  "noisy_runs": %d,\n  "noisy_pct": %s,\n' "$NOISY_RUNS" "$NOISY_PCT"
  printf '  "median_over": {"nginx": "%s", "torii": "%s"},\n' \
    "$([ "${CLEAN_ONLY[nginx]}" = 1 ] && echo "${CLEAN_COUNT[nginx]} clean runs" || echo "all runs")" \
    "$([ "${CLEAN_ONLY[torii]}" = 1 ] && echo "${CLEAN_COUNT[torii]} clean runs" || echo "all runs")"
  printf '  "runs": [\n'
  bench_json_runs_and_status "$RUNS"
} >"$SUMMARY"
if command -v jq >/dev/null 2>&1; then jq empty "$SUMMARY" || bench_warn "summary is not valid JSON: $SUMMARY"; fi
echo "summary: $SUMMARY"
echo "work dir: $WORK"
echo "command: $COMMAND"
exit "$FAILED"
