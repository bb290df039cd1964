#!/usr/bin/env bash
# bench/cache_bench.sh: cache hits, Torii vs nginx, side by side.
#
# One nginx origin answers GET /cached with a fixed body (1 KiB) and
# "Cache-Control: max-age=3600". Three servers, each with one worker pinned to
# the same core, run at the same time; wrk drives each in turn over keep-alive
# connections, in interleaved rounds:
#
#   nginx-return  nginx answering the same body itself (`return 200`): the floor
#   nginx-cache   nginx with proxy_cache in front of the origin, warm
#   torii         Torii with a cached route ("cache": {"ttl": "1h",
#                 "prewarm": ["/cached"]}) in front of the origin, warm
#
# Before measuring, the script checks that every server answers 200 with
# exactly the origin's body, and that the two caches answer from the cache
# (Torii: "Cache-Status: torii; hit"; nginx: "X-Cache-Status: HIT"); it stops
# with an error otherwise. During the runs the origin's access log must stay
# (nearly) empty: a cache that forwards requests is reported as a problem.
# Prints the medians of req/s, p50/p99 latency and server CPU time per request
# (user+system of the server's whole process tree, from /proc), and the
# ratios Torii/nginx-cache (req/s, target >= 1.5) and Torii/nginx-return (CPU
# us/request, target <= 1.0). The method is proxy_bench.sh's (bench/README.md).
#
# Usage:   bench/cache_bench.sh                 # full: 3 rounds of 10 s each
#          QUICK=1 bench/cache_bench.sh         # smoke test: 1 round of 3 s
#          ROUNDS=5 DURATION=10s CALLGRIND=1 bench/cache_bench.sh
#
# Environment (defaults in brackets): as proxy_bench.sh (ROUNDS [3],
# DURATION [10s], WARMUP [2s], CONNECTIONS [64], THREADS [1], PROXY_CPU [0],
# LOAD_CPU [1], NGINX_BIN, RESULTS_DIR, QUIET_MAX_PCT [15], QUIET_WAIT [120],
# NOISY_PCT [10], NOISY_RETRIES [2], CALLGRIND, CALLGRIND_DURATION [5s],
# QUICK), plus
#   TORII_BIN [<repo>/build/gateway/torii]  the binary to measure; this script
#                     does not build it (scripts/build.sh release does)
#   BODY_BYTES [1024] size of the cached body (BODY_SIZE is the same knob)
#   PORT_BASE [18800] first port tried (free ones are picked)
#   CACHE_PATH [/cached]  the path that is cached and requested
#   TORII_ROUTE_HOST [*]  "match.host" of Torii's cached route. With "*",
#                     prewarm fetches with the first listener's address
#                     (127.0.0.1:PORT), the Host wrk and curl send, so the
#                     pre-warmed entry is the one the runs hit
#   WARM_REQUESTS [5] requests sent to each cache before checking for a hit
#   ORIGIN_MAX_PCT [0.1]  a run of a cache during which more than this % of
#                     the requests reached the origin is a problem
#   SKIP_TORII=1      measure only the two nginx servers (to test the script
#                     without a binary that has the cache); the ratios are n/a
#
# Output: the tables on stdout; bench/results/cache-<timestamp>.json (summary
# and every run), bench/results/cache-<timestamp>.md (the tables, in
# Markdown), bench/results/cache-<timestamp>/ (configs, logs, raw wrk
# outputs, response headers). Exit status: 0 if every run was clean, 1 if a run
# had socket errors or non-2xx responses, a server died, or a cache forwarded
# requests to the origin (the targets do not change it).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- parameters
bench_run_parameters  # ROUNDS, DURATION, WARMUP, CONNECTIONS, THREADS, QUIET_*, NOISY_*
BODY_BYTES=${BODY_BYTES:-${BODY_SIZE:-1024}}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${PORT_BASE:-18800}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}
TORII_BIN=${TORII_BIN:-$REPO/build/gateway/torii}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
CACHE_PATH=${CACHE_PATH:-/cached}
TORII_ROUTE_HOST=${TORII_ROUTE_HOST:-*}
WARM_REQUESTS=${WARM_REQUESTS:-5}
ORIGIN_MAX_PCT=${ORIGIN_MAX_PCT:-0.1}
SKIP_TORII=${SKIP_TORII:-0}

bench_check_run_parameters
if ! [[ $BODY_BYTES =~ ^[0-9]+$ ]] || ((BODY_BYTES < 1 || BODY_BYTES > 65536)); then
  bench_die "BODY_BYTES (BODY_SIZE) must be 1..65536 (the body is inlined in nginx's configs)"
fi
[[ $CACHE_PATH =~ ^/[A-Za-z0-9/._-]*$ ]] || bench_die "CACHE_PATH must be a plain absolute path"
if ! [[ $WARM_REQUESTS =~ ^[0-9]+$ ]] || ((WARM_REQUESTS < 1)); then bench_die "WARM_REQUESTS must be >= 1"; fi

if [ "$SKIP_TORII" = 1 ]; then
  SERVERS=(nginx-return nginx-cache)
else
  SERVERS=(nginx-return nginx-cache torii)
fi

COMMAND="ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS BODY_BYTES=$BODY_BYTES"
[ "${QUICK:-0}" = 1 ] && COMMAND="QUICK=1 $COMMAND"
[ "${CALLGRIND:-0}" = 1 ] && COMMAND="$COMMAND CALLGRIND=1"
[ "$SKIP_TORII" = 1 ] && COMMAND="$COMMAND SKIP_TORII=1"
[ "$TORII_BIN" != "$REPO/build/gateway/torii" ] && COMMAND="$COMMAND TORII_BIN=$TORII_BIN"
COMMAND="$COMMAND bench/cache_bench.sh"

bench_require wrk taskset curl awk sort cmp timeout getconf wc
[ -x "$NGINX_BIN" ] || bench_die "nginx not found (set NGINX_BIN)"
bench_check_cores servers

# ---------------------------------------------------------------- torii binary
# Not built here: the binary of a release build (scripts/build.sh release),
# or TORII_BIN.
TORII_BUILD_TYPE=""
if [ "$SKIP_TORII" != 1 ]; then
  if [ ! -x "$TORII_BIN" ]; then
    bench_die "torii binary not found: $TORII_BIN
  build it first:  scripts/build.sh release   (-> build/gateway/torii)
  or point TORII_BIN at one, or run only the nginx servers with SKIP_TORII=1"
  fi
  TORII_BIN=$(cd "$(dirname "$TORII_BIN")" && pwd)/$(basename "$TORII_BIN")
  TORII_BUILD_TYPE=$(awk -F= '/^CMAKE_BUILD_TYPE:/ { print $2 }' "$(dirname "$(dirname "$TORII_BIN")")/CMakeCache.txt" 2>/dev/null || true)
  [ "${TORII_BUILD_TYPE:-Release}" = Release ] ||
    bench_warn "$TORII_BIN is a ${TORII_BUILD_TYPE} build, not Release: the figures will not mean much"
  if [ "$TORII_BIN" = "$REPO/build/gateway/torii" ]; then
    newer=$(find "$REPO"/{cache,common,conf,gateway,metrics,upstream} \( -name '*.cpp' -o -name '*.hpp' \) \
      -newer "$TORII_BIN" 2>/dev/null | head -n 5 | sed "s|^$REPO/||" | paste -sd' ' - || true)
    [ -z "$newer" ] || bench_warn "sources changed after $TORII_BIN was built (e.g. $newer): rebuild with scripts/build.sh release?"
  fi
fi

# ---------------------------------------------------------------- work dir
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$RESULTS_DIR"
WORK="$RESULTS_DIR/cache-$STAMP"
SUMMARY="$RESULTS_DIR/cache-$STAMP.json"
MARKDOWN="$RESULTS_DIR/cache-$STAMP.md"
mkdir -p "$WORK"/{origin-tmp,nginx-cache-tmp,nginx-return-tmp,wrk}
chmod 755 "$WORK" "$WORK"/origin-tmp "$WORK"/nginx-cache-tmp "$WORK"/nginx-return-tmp # nginx workers may run as nobody
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
USED=("$ORIGIN_PORT")
pick() { # -> PICKED, a free port not used yet (no subshell: USED must grow)
  PICKED=$(bench_pick_port $((USED[-1] + 1)) "${USED[@]}") || bench_die "no free port"
  USED+=("$PICKED")
}
declare -A PORT_OF PID_OF LOG_OF CONF_OF MAY_EXIT_OF
for s in nginx-return nginx-cache torii; do
  pick
  PORT_OF[$s]=$PICKED
done
pick
TORII_ADMIN_PORT=$PICKED

# A fixed body: hex digits, no character nginx would treat specially.
BODY=$(awk -v n="$BODY_BYTES" 'BEGIN { s = ""; while (length(s) < n) s = s "0123456789abcdef"; printf "%s", substr(s, 1, n) }')
printf '%s' "$BODY" >"$WORK/expected-body"

bench_render "$BENCH_DIR/nginx-cache-origin.conf.tmpl" "$WORK/origin.conf" \
  DIR="$WORK" ORIGIN_PORT="$ORIGIN_PORT" BODY="$BODY" CACHE_PATH="$CACHE_PATH"
bench_render "$BENCH_DIR/nginx-return.conf.tmpl" "$WORK/nginx-return.conf" \
  DIR="$WORK" PROXY_PORT="${PORT_OF[nginx-return]}" BODY="$BODY" CACHE_PATH="$CACHE_PATH"
bench_render "$BENCH_DIR/nginx-cache.conf.tmpl" "$WORK/nginx-cache.conf" \
  DIR="$WORK" ORIGIN_PORT="$ORIGIN_PORT" PROXY_PORT="${PORT_OF[nginx-cache]}"
bench_render "$BENCH_DIR/torii-cache.json.tmpl" "$WORK/torii.json" \
  ORIGIN_PORT="$ORIGIN_PORT" PROXY_PORT="${PORT_OF[torii]}" ADMIN_PORT="$TORII_ADMIN_PORT" \
  ROUTE_HOST="$TORII_ROUTE_HOST" CACHE_PATH="$CACHE_PATH"
CONF_OF=([nginx-return]="$WORK/nginx-return.conf" [nginx-cache]="$WORK/nginx-cache.conf" [torii]="$WORK/torii.json")
LOG_OF=([nginx-return]="$WORK/nginx-return-error.log" [nginx-cache]="$WORK/nginx-cache-error.log" [torii]="$WORK/torii.log")

for c in origin nginx-return nginx-cache; do
  "$NGINX_BIN" -t -q -p "$WORK" -c "$WORK/$c.conf" >"$WORK/$c-t.log" 2>&1 ||
    { cat "$WORK/$c-t.log" >&2; bench_die "$c: nginx config rejected"; }
done
if [ "$SKIP_TORII" != 1 ]; then
  "$TORII_BIN" -t -c "$WORK/torii.json" >"$WORK/torii-t.log" 2>&1 || {
    cat "$WORK/torii-t.log" >&2
    bench_die "torii rejected the cache config $WORK/torii.json (is the response cache in this binary, $TORII_BIN?)"
  }
fi

# ---------------------------------------------------------------- start
bench_log "origin 127.0.0.1:$ORIGIN_PORT (core $LOAD_CPU); $(for s in "${SERVERS[@]}"; do printf '%s 127.0.0.1:%s, ' "$s" "${PORT_OF[$s]}"; done)(core $PROXY_CPU)"
bench_start origin "$LOAD_CPU" "$WORK/origin.log" "$NGINX_BIN" -p "$WORK" -c "$WORK/origin.conf"
ORIGIN_PID=$BENCH_LAST_PID
bench_wait_port 127.0.0.1 "$ORIGIN_PORT" 10 "$ORIGIN_PID" ||
  { cat "$WORK/origin.log" "$WORK/origin-error.log" >&2 2>/dev/null; bench_die "origin did not start"; }
for s in "${SERVERS[@]}"; do
  if [ "$s" = torii ]; then
    bench_start torii "$PROXY_CPU" "$WORK/torii.log" "$TORII_BIN" -c "$WORK/torii.json"
  else
    bench_start "$s" "$PROXY_CPU" "$WORK/$s.log" "$NGINX_BIN" -p "$WORK" -c "${CONF_OF[$s]}"
  fi
  PID_OF[$s]=$BENCH_LAST_PID
done
for s in "${SERVERS[@]}"; do
  bench_wait_port 127.0.0.1 "${PORT_OF[$s]}" 15 "${PID_OF[$s]}" ||
    { tail -n 50 "${LOG_OF[$s]}" "$WORK/$s.log" >&2 2>/dev/null; bench_die "$s did not start"; }
done
if [ "$SKIP_TORII" != 1 ]; then
  bench_wait_port 127.0.0.1 "$TORII_ADMIN_PORT" 10 "${PID_OF[torii]}" ||
    { tail -n 50 "$WORK/torii.log" >&2; bench_die "torii's admin listener did not start"; }
  # /readyz: every worker is up (after its pre-warm fetches, or their timeout).
  for ((i = 0; i < 150; i++)); do
    [ "$(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TORII_ADMIN_PORT/readyz" 2>/dev/null)" = 200 ] && break
    sleep 0.1
  done
fi
# nginx's cache loader process exits on its own (about a minute after the
# start): that is not a dead worker.
MAY_EXIT_OF[nginx-cache]=$(for p in $(bench_tree_pids "${PID_OF[nginx-cache]}"); do
  tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'cache loader' && echo "$p"
done | paste -sd' ' -)

URL_OF() { echo "http://127.0.0.1:${PORT_OF[$1]}$CACHE_PATH"; }
# hdr FILE NAME: the value of header NAME (any case) in a curl -D dump.
hdr() { awk -v h="${2,,}" '{ sub(/\r$/, "") } index(tolower($0), h ":") == 1 { sub(/^[^:]*:[ \t]*/, ""); print; exit }' "$1"; }
# get NAME URL TAG: one GET; headers in $WORK/headers-NAME-TAG.txt, body in
# $WORK/check-NAME-TAG.body; fails unless 200 with exactly the origin's body.
get() {
  local name=$1 url=$2 tag=$3 code
  code=$(curl -sS --max-time 5 -D "$WORK/headers-$name-$tag.txt" -o "$WORK/check-$name-$tag.body" -w '%{http_code}' "$url") ||
    { tail -n 20 "${LOG_OF[$name]:-/dev/null}" >&2 2>/dev/null; bench_die "$name: GET $url: curl failed"; }
  [ "$code" = 200 ] || { cat "$WORK/headers-$name-$tag.txt" >&2; bench_die "$name: GET $url answered $code, want 200"; }
  cmp -s "$WORK/check-$name-$tag.body" "$WORK/expected-body" ||
    bench_die "$name: body of GET $url differs from the origin's ($(wc -c <"$WORK/check-$name-$tag.body") bytes, want $BODY_BYTES)"
}
# is_hit NAME HEADERFILE: true if the response was answered from the cache.
is_hit() {
  case $1 in
  torii) hdr "$2" Cache-Status | grep -Eiq '(^|,)[[:space:]]*torii[[:space:]]*;[[:space:]]*hit[[:space:]]*(;|,|$)' ;;
  nginx-cache) [ "$(hdr "$2" X-Cache-Status)" = HIT ] ;;
  *) return 0 ;;
  esac
}
cache_header_of() { # NAME HEADERFILE -> the cache's status header, "name: value"
  case $1 in
  torii) echo "Cache-Status: $(hdr "$2" Cache-Status)" ;;
  nginx-cache) echo "X-Cache-Status: $(hdr "$2" X-Cache-Status)" ;;
  *) echo "-" ;;
  esac
}

# Correctness and warmth first. The origin: 200, the body, the Cache-Control
# header the caches rely on. Each cache: its first answer (Torii: pre-warmed,
# so already a hit if prewarm covers the requests' key; nginx: a miss), then
# WARM_REQUESTS more; the last must be a hit.
get origin "http://127.0.0.1:$ORIGIN_PORT$CACHE_PATH" first
[ "$(hdr "$WORK/headers-origin-first.txt" Cache-Control)" = "max-age=3600" ] ||
  bench_die "origin: no 'Cache-Control: max-age=3600' header (see $WORK/headers-origin-first.txt)"
declare -A FIRST_STATUS WARM_STATUS HEADER_BYTES
for s in "${SERVERS[@]}"; do
  get "$s" "$(URL_OF "$s")" first
  FIRST_STATUS[$s]=$(cache_header_of "$s" "$WORK/headers-$s-first.txt")
  for ((i = 1; i <= WARM_REQUESTS; i++)); do get "$s" "$(URL_OF "$s")" warm; done
  WARM_STATUS[$s]=$(cache_header_of "$s" "$WORK/headers-$s-warm.txt")
  HEADER_BYTES[$s]=$(wc -c <"$WORK/headers-$s-warm.txt")
  if ! is_hit "$s" "$WORK/headers-$s-warm.txt"; then
    bench_warn "$s: response headers after $WARM_REQUESTS warm-up requests:"
    sed 's/^/    /' "$WORK/headers-$s-warm.txt" >&2
    [ "$s" = torii ] && { bench_warn "torii's log:"; tail -n 20 "$WORK/torii.log" >&2; }
    bench_die "$s is not answering from its cache: want $([ "$s" = torii ] && echo '"Cache-Status: torii; hit"' || echo '"X-Cache-Status: HIT"'), got \"${WARM_STATUS[$s]}\""
  fi
  bench_log "$s: first answer ${FIRST_STATUS[$s]}; after $WARM_REQUESTS more: ${WARM_STATUS[$s]}; response headers ${HEADER_BYTES[$s]} bytes"
done
if [ "$SKIP_TORII" != 1 ] && ! is_hit torii "$WORK/headers-torii-first.txt"; then
  bench_warn "torii's first answer was not a hit (${FIRST_STATUS[torii]}): prewarm did not store GET $CACHE_PATH under Host 127.0.0.1:${PORT_OF[torii]} (route host \"$TORII_ROUTE_HOST\")"
fi

# The origin's access log counts the requests that reach it.
origin_lines() { wc -l 2>/dev/null <"$WORK/origin-access.log" || echo 0; }

TORII_VERSION=skipped
TORII_SHA=-
if [ "$SKIP_TORII" != 1 ]; then
  TORII_VERSION=$("$TORII_BIN" --version 2>/dev/null || echo unknown)
  TORII_SHA=$(sha256sum "$TORII_BIN" | cut -c1-16)
fi
NGINX_VERSION=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }')
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY_FILES=$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | awk '{ print $NF }' | paste -sd' ' - || true)
GIT_DIRTY=$([ -n "$GIT_DIRTY_FILES" ] && echo true || echo false)
CLK_TCK=$(bench_clk_tck)
MACHINE=$(bench_machine_info)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

bench_log "machine: $MACHINE; load average $LOADAVG_START"
bench_log "git $GIT_REV$([ "$GIT_DIRTY" = true ] && echo " + uncommitted changes in: $GIT_DIRTY_FILES")"
[ "$SKIP_TORII" = 1 ] && bench_log "SKIP_TORII=1: torii is not measured"
[ "$SKIP_TORII" = 1 ] || bench_log "torii: $TORII_BIN ($TORII_VERSION, ${TORII_BUILD_TYPE:-build type unknown}, sha256 $TORII_SHA...)"
bench_log "nginx $NGINX_VERSION; wrk $WRK_VERSION"
for s in "${SERVERS[@]}"; do bench_log "tree of $s: $(bench_tree_pids "${PID_OF[$s]}" | tr '\n' ' ')"; done

# ---------------------------------------------------------------- runs
printf 'server\tround\t%s\tuser_us_per_req\tsys_us_per_req\torigin_requests\n' "$BENCH_RUN_COLUMNS" >"$RUNS"
FAILED=0

# run_one SERVER ROUND DURATION: one wrk run against SERVER
# (bench_measure_run), plus the count of requests that reached the origin;
# ROUND "warmup" is not recorded.
run_one() {
  local s=$1 round=$2 dur=$3 n0 n1 fwd
  n0=$(origin_lines)
  BENCH_TREE_MAY_EXIT=${MAY_EXIT_OF[$s]:-}
  bench_measure_run "$s" "$round" "$dur" "$(URL_OF "$s")" "${PID_OF[$s]}" "${LOG_OF[$s]}" || return 1
  BENCH_TREE_MAY_EXIT=""
  n1=$(origin_lines)
  fwd=$((n1 - n0))
  if [ "$s" != nginx-return ] && awk -v f="$fwd" -v n="$BR_REQ" -v m="$ORIGIN_MAX_PCT" \
    'BEGIN { exit !(n + 0 > 0 && 100 * f / n > m + 0) }'; then
    PROBLEMS+=("$s round $round: $fwd of $BR_REQ requests reached the origin (> $ORIGIN_MAX_PCT %): not answered from the cache")
    FAILED=1
    bench_warn "$s round $round: $fwd of $BR_REQ requests reached the origin"
  fi
  if [ "$round" = warmup ]; then
    bench_log "warm-up $s: $BR_RPS req/s, $fwd request(s) reached the origin"
  else
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$round" "$(bench_run_fields)" "$BR_USER_US" "$BR_SYS_US" "$fwd" >>"$RUNS"
    bench_log "$(printf 'round %s %-12s %9s req/s  p50 %6.0f us  p99 %6.0f us  cpu %6s us/req  server cpu %5s%%  origin req %s  other %s%%%s' \
      "$round" "$s" "$BR_RPS" "$BR_P50" "$BR_P99" "$BR_CPU_US" "$BR_UTIL" "$fwd" "$BR_OTHER" \
      "$([ "$BR_NOISY" = yes ] && echo '  NOISY')")"
  fi
}

bench_log "warm-up: $WARMUP per server"
for s in "${SERVERS[@]}"; do run_one "$s" warmup "$WARMUP" || true; done
bench_log "measuring: $ROUNDS round(s) of $DURATION, -t$THREADS -c$CONNECTIONS, order ${SERVERS[*]}"
bench_run_rounds run_one "$ROUNDS" "$DURATION" "${SERVERS[@]}"
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

# Still answering from the cache at the end?
declare -A END_STATUS
for s in "${SERVERS[@]}"; do
  bench_alive "${PID_OF[$s]}" || continue
  get "$s" "$(URL_OF "$s")" end
  END_STATUS[$s]=$(cache_header_of "$s" "$WORK/headers-$s-end.txt")
  if ! is_hit "$s" "$WORK/headers-$s-end.txt"; then
    PROBLEMS+=("$s: the answer after the runs was not a cache hit (${END_STATUS[$s]})")
    FAILED=1
  fi
done
ORIGIN_REQUESTS_TOTAL=$(origin_lines)

# Torii's log at level warn should be empty in a clean run; its /metrics
# (cache series, if any) are kept.
TORII_LOG_LINES=0
TORII_CACHE_METRICS=""
METRICS_HITS=nan
WRK_REQ_TORII=0
if [ "$SKIP_TORII" != 1 ]; then
  TORII_LOG_LINES=$(grep -c . "$WORK/torii.log" || true)
  e=$(grep -c 'level=error' "$WORK/torii.log" || true)
  if ((TORII_LOG_LINES > 0)); then
    bench_warn "torii wrote $TORII_LOG_LINES log line(s) at level >= warn ($e error); first ones:"
    head -n 10 "$WORK/torii.log" >&2
    ((e == 0)) || { PROBLEMS+=("torii logged $e error line(s), see $WORK/torii.log"); FAILED=1; }
  fi
  if curl -sS --max-time 5 -o "$WORK/metrics-torii.txt" "http://127.0.0.1:$TORII_ADMIN_PORT/metrics"; then
    TORII_CACHE_METRICS=$(grep -E '^torii_[a-z_]*cache[a-z_]*[{ ]' "$WORK/metrics-torii.txt" | head -n 20 || true)
  fi
  # torii_cache_requests_total{result="hit"} (docs/METRICS.md) must count at
  # least the requests wrk reported in the measured runs.
  WRK_REQ_TORII=$(awk -F'\t' 'NR > 1 && $1 == "torii" && $4 != "nan" { s += $4 } END { printf "%.0f\n", s }' "$RUNS")
  if grep -q '^torii_cache_requests_total[{ ]' "$WORK/metrics-torii.txt" 2>/dev/null; then
    METRICS_HITS=$(awk '/^torii_cache_requests_total[{ ]/ && /result="hit"/ { s += $NF } END { printf "%.0f\n", s }' "$WORK/metrics-torii.txt")
    if ((METRICS_HITS < WRK_REQ_TORII)); then
      PROBLEMS+=("torii: /metrics counts $METRICS_HITS cache hits, fewer than the $WRK_REQ_TORII requests of the measured runs")
      FAILED=1
    fi
    bench_log "torii /metrics: $METRICS_HITS cache hits (the measured runs had $WRK_REQ_TORII requests)"
  else
    bench_warn "torii's /metrics has no torii_cache_requests_total series (see $WORK/metrics-torii.txt)"
  fi
fi
for s in nginx-return nginx-cache; do
  n=$(grep -c . "${LOG_OF[$s]}" 2>/dev/null || true)
  ((n == 0)) || bench_warn "$s wrote $n error-log line(s): ${LOG_OF[$s]}"
done

# ---------------------------------------------------------------- callgrind
# Optional: user-space instructions per request of each server's worker, as
# in proxy_bench.sh: a fresh instance under callgrind serves 1 request,
# another CALLGRIND_DURATION of wrk load; (Ir_load - Ir_1) / (requests_load - 1)
# cancels start-up, pre-warm and the first miss. Kernel work is not counted.
declare -A IR_PER_REQ=([nginx-return]=nan [nginx-cache]=nan [torii]=nan)
declare -A CG_PORT_OF
callgrind_run() { # SERVER DIR LOAD(0|1): sets CG_RESULT="ir requests" (no subshell: the traps must see the PIDs)
  local s=$1 dir=$2 load=$3 port=${CG_PORT_OF[$1]} n master
  mkdir -p "$dir"
  chmod 777 "$dir" # nginx's worker (user nobody under root) writes its own file
  case $s in
  torii)
    bench_start "cg-$s" "$PROXY_CPU" "$dir/log" valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
      "$TORII_BIN" -c "$WORK/cg/torii.json" ;;
  *)
    rm -rf "$WORK/cg/nginx-cache-tmp/cache" # a cold cache for each instance
    bench_start "cg-$s" "$PROXY_CPU" "$dir/log" valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" \
      "$NGINX_BIN" -p "$WORK/cg" -c "$WORK/cg/$s.conf" ;;
  esac
  master=$BENCH_LAST_PID
  bench_wait_port 127.0.0.1 "$port" 60 "$master" || { tail -n 20 "$dir/log" >&2; return 1; }
  sleep 2 # Torii's pre-warm fetch, under valgrind
  if [ "$load" = 1 ]; then
    bench_wrk "$dir/wrk.txt" "$LOAD_CPU" -t"$THREADS" -c"$CONNECTIONS" -d"$CALLGRIND_DURATION" \
      "http://127.0.0.1:$port$CACHE_PATH" || true
    n=$(bench_wrk_field "$(bench_wrk_parse "$dir/wrk.txt")" requests)
  else
    curl -sS --max-time 30 -o /dev/null "http://127.0.0.1:$port$CACHE_PATH" || return 1
    n=1
  fi
  bench_stop "$master" 60
  CG_RESULT="$(bench_callgrind_worker_ir "$dir" "$master") $n"
}
if [ "${CALLGRIND:-0}" = 1 ]; then
  if command -v valgrind >/dev/null 2>&1; then
    CALLGRIND_DURATION=${CALLGRIND_DURATION:-5s}
    mkdir -p "$WORK"/cg/{nginx-cache-tmp,nginx-return-tmp}
    chmod 755 "$WORK"/cg "$WORK"/cg/nginx-cache-tmp "$WORK"/cg/nginx-return-tmp
    for s in "${SERVERS[@]}"; do
      pick
      CG_PORT_OF[$s]=$PICKED
    done
    bench_render "$BENCH_DIR/nginx-return.conf.tmpl" "$WORK/cg/nginx-return.conf" \
      DIR="$WORK/cg" PROXY_PORT="${CG_PORT_OF[nginx-return]}" BODY="$BODY" CACHE_PATH="$CACHE_PATH"
    bench_render "$BENCH_DIR/nginx-cache.conf.tmpl" "$WORK/cg/nginx-cache.conf" \
      DIR="$WORK/cg" ORIGIN_PORT="$ORIGIN_PORT" PROXY_PORT="${CG_PORT_OF[nginx-cache]}"
    if [ "$SKIP_TORII" != 1 ]; then
      pick
      bench_render "$BENCH_DIR/torii-cache.json.tmpl" "$WORK/cg/torii.json" \
        ORIGIN_PORT="$ORIGIN_PORT" PROXY_PORT="${CG_PORT_OF[torii]}" ADMIN_PORT="$PICKED" \
        ROUTE_HOST="$TORII_ROUTE_HOST" CACHE_PATH="$CACHE_PATH"
    fi
    for s in "${SERVERS[@]}"; do
      bench_log "callgrind: $s, 1 request, then $CALLGRIND_DURATION of load"
      if callgrind_run "$s" "$WORK/cg/$s-1" 0 && one=$CG_RESULT &&
        callgrind_run "$s" "$WORK/cg/$s-load" 1 && many=$CG_RESULT; then
        IR_PER_REQ[$s]=$(awk -v a="$one" -v b="$many" 'BEGIN { split(a, x, " "); split(b, y, " ")
          if (y[2] - x[2] <= 0 || x[1] == 0 || y[1] == 0) print "nan"; else printf "%.0f\n", (y[1] - x[1]) / (y[2] - x[2]) }')
        bench_log "callgrind: $s worker: $one (Ir requests) / $many -> ${IR_PER_REQ[$s]} instructions/request"
      else
        PROBLEMS+=("callgrind run of $s failed, see $WORK/cg/")
      fi
    done
  else
    bench_warn "CALLGRIND=1 but valgrind is not installed"
  fi
fi

# ---------------------------------------------------------------- summary
declare -A CLEAN_ONLY CLEAN_COUNT
for s in "${SERVERS[@]}"; do
  n=$(awk -F'\t' -v p="$s" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "noisy") k = i; next }
    $1 == p && $k == "no" { n++ } END { print n + 0 }' "$RUNS")
  if ((n > 0)); then CLEAN_ONLY[$s]=1; else CLEAN_ONLY[$s]=0; fi
  CLEAN_COUNT[$s]=$n
done
col() { # SERVER COLUMN -> median over the clean runs (all runs if none is clean)
  awk -F'\t' -v p="$1" -v c="$2" -v clean="${CLEAN_ONLY[$1]:-0}" '
    NR == 1 { for (i = 1; i <= NF; i++) { if ($i == c) k = i; if ($i == "noisy") q = i }; next }
    $1 == p && $k != "nan" && (!clean || $q == "no") { print $k }' "$RUNS" | bench_median
}
declare -A MED ORIGIN_REQ # ORIGIN_REQ: requests that reached the origin, summed over the measured runs
METRICS=(rps p50_us p99_us cpu_us_per_req user_us_per_req sys_us_per_req proxy_cpu_pct origin_cpu_us_per_req
  core_proxy_busy_pct core_load_busy_pct steal_pct wrk_cpu_pct other_cpu_pct)
for s in nginx-return nginx-cache torii; do
  for m in "${METRICS[@]}"; do MED[$s.$m]=$(col "$s" "$m"); done
  ORIGIN_REQ[$s]=$(awk -F'\t' -v p="$s" 'NR > 1 && $1 == p { n += $NF } END { print n + 0 }' "$RUNS")
done
# paired A B COLUMN -> "median min max" of A/B round by round, over the rounds
# whose runs of both are clean (the runs of a round are back to back).
paired() {
  awk -F'\t' -v a="$1" -v b="$2" -v c="$3" 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == c) k = i; if ($i == "noisy") q = i }; next }
    $q == "no" && $k != "nan" { v[$1, $2] = $k; r[$2] = 1 }
    END { for (x in r) if (((a, x) in v) && ((b, x) in v) && v[b, x] + 0 > 0) printf "%.4f\n", v[a, x] / v[b, x] }' "$RUNS" |
    sort -g | awk '{ a[++n] = $1 } END { if (!n) { print "nan nan nan"; exit }
      m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2; printf "%.3f %.3f %.3f\n", m, a[1], a[n] }'
}
declare -A R P
for b in nginx-cache nginx-return; do
  for m in rps p50_us p99_us cpu_us_per_req; do R[$b.$m]=$(bench_ratio "${MED[torii.$m]}" "${MED[$b.$m]}"); done
  R[$b.ir]=$(bench_ratio "${IR_PER_REQ[torii]}" "${IR_PER_REQ[$b]}")
  for m in rps cpu_us_per_req; do P[$b.$m]=$(paired torii "$b" "$m"); done
done
verdict() { # VALUE OP LIMIT
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "nan") { print "n/a"; exit }
    ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "met" : "NOT met" }'
}
TARGET_RPS_VS_CACHE=1.5
TARGET_CPU_VS_RETURN=1.0
V_RPS=$(verdict "${R[nginx-cache.rps]}" ">=" "$TARGET_RPS_VS_CACHE")
V_CPU=$(verdict "${R[nginx-return.cpu_us_per_req]}" "<=" "$TARGET_CPU_VS_RETURN")
per_round() { # "median min max" -> text
  local m lo hi
  read -r m lo hi <<<"$1"
  [ "$m" = nan ] && { echo "-"; return; }
  echo "round by round: median $m, $lo..$hi"
}

ms() { awk -v u="$1" 'BEGIN { if (u == "nan") print "nan"; else printf "%.3f", u / 1000 }'; }
NOISY_RUNS=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "noisy") k = i; next } $k == "yes" { n++ } END { print n + 0 }' "$RUNS")
TOTAL_RUNS=$(($(wc -l <"$RUNS") - 1))
# The tables, in Markdown: on stdout and in cache-<timestamp>.md.
{
  echo "## Cache hits: Torii vs nginx, $BODY_BYTES-byte body ($(date -u '+%Y-%m-%d %H:%M UTC'), git \`$GIT_REV\`$([ "$GIT_DIRTY" = true ] && echo ' + uncommitted changes'))"
  echo
  echo "\`$COMMAND\`: $ROUNDS round(s) x $DURATION, wrk -t$THREADS -c$CONNECTIONS on core $LOAD_CPU (with the origin),"
  echo "every server with 1 worker on core $PROXY_CPU. Machine: $MACHINE."
  if [ "$SKIP_TORII" = 1 ]; then
    echo "Torii: not measured (SKIP_TORII=1); nginx $NGINX_VERSION; wrk $WRK_VERSION."
  else
    echo "Torii: ${TORII_BIN/#"$REPO/"/} ($TORII_VERSION, ${TORII_BUILD_TYPE:-build type unknown}, sha256 $TORII_SHA...); nginx $NGINX_VERSION; wrk $WRK_VERSION."
  fi
  echo "Medians over the clean runs ($(for s in "${SERVERS[@]}"; do printf '%s: %s; ' "$s" "${CLEAN_COUNT[$s]}"; done)all runs for a server with none)."
  echo "CPU = user+system of the server's process tree (master + workers), from /proc, per request."
  echo
  printf '| %-12s | %10s | %9s | %9s | %10s | %8s | %8s | %12s | %10s | %11s | %-34s |\n' server "req/s" "p50 ms" "p99 ms" \
    "CPU us/req" "user us" "sys us" "server CPU %" "origin req" "user Ir/req" "cache status (warm)"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------------- ------------ ----------- ----------- ------------ ---------- \
    ---------- -------------- ------------ ------------- ------------------------------------
  for s in "${SERVERS[@]}"; do
    printf '| %-12s | %10.0f | %9s | %9s | %10s | %8s | %8s | %12s | %10s | %11s | %-34s |\n' "$s" "${MED[$s.rps]}" \
      "$(ms "${MED[$s.p50_us]}")" "$(ms "${MED[$s.p99_us]}")" "${MED[$s.cpu_us_per_req]}" "${MED[$s.user_us_per_req]}" \
      "${MED[$s.sys_us_per_req]}" "${MED[$s.proxy_cpu_pct]}" "${ORIGIN_REQ[$s]}" "${IR_PER_REQ[$s]}" "${WARM_STATUS[$s]}"
  done
  echo
  printf '| %-34s | %6s | %-7s | %s\n' "ratio" value target verdict
  printf '|%s|%s|%s|%s\n' ------------------------------------ -------- --------- --------
  printf '| %-34s | %6s | %-7s | %s\n' "Torii / nginx-cache req/s" "${R[nginx-cache.rps]}" ">= $TARGET_RPS_VS_CACHE" \
    "$V_RPS; $(per_round "${P[nginx-cache.rps]}")"
  printf '| %-34s | %6s | %-7s | %s\n' "Torii / nginx-return CPU us/req" "${R[nginx-return.cpu_us_per_req]}" "<= $TARGET_CPU_VS_RETURN" \
    "$V_CPU; $(per_round "${P[nginx-return.cpu_us_per_req]}")"
  printf '| %-34s | %6s | %-7s | %s\n' "Torii / nginx-cache CPU us/req" "${R[nginx-cache.cpu_us_per_req]}" "-" \
    "$(per_round "${P[nginx-cache.cpu_us_per_req]}")"
  printf '| %-34s | %6s | %-7s | %s\n' "Torii / nginx-cache p99" "${R[nginx-cache.p99_us]}" "-" "-"
  printf '| %-34s | %6s | %-7s | %s\n' "Torii / nginx-return req/s" "${R[nginx-return.rps]}" "-" \
    "$(per_round "${P[nginx-return.rps]}")"
  printf '| %-34s | %6s | %-7s | %s\n' "Torii / nginx-return p99" "${R[nginx-return.p99_us]}" "-" "-"
  if [ "${CALLGRIND:-0}" = 1 ]; then
    printf '| %-34s | %6s | %-7s | %s\n' "Torii / nginx-cache user Ir/req" "${R[nginx-cache.ir]}" "-" "callgrind"
    printf '| %-34s | %6s | %-7s | %s\n' "Torii / nginx-return user Ir/req" "${R[nginx-return.ir]}" "-" "callgrind"
  fi
  echo
  echo "Response headers (bytes, with the status line): $(for s in "${SERVERS[@]}"; do printf '%s %s; ' "$s" "${HEADER_BYTES[$s]}"; done)body $BODY_BYTES bytes."
  [ "$SKIP_TORII" = 1 ] || echo "Torii's first answer (pre-warmed): ${FIRST_STATUS[torii]}."
  echo "origin req: requests that reached the origin during the server's measured runs (0 expected); $ORIGIN_REQUESTS_TOTAL in all since the start (the checks and nginx's first miss included)."
  echo "Machine noise: $NOISY_RUNS of $TOTAL_RUNS runs had other processes above $NOISY_PCT% of a core (marked noisy); median other CPU: $(for s in "${SERVERS[@]}"; do printf '%s %s%%; ' "$s" "${MED[$s.other_cpu_pct]}"; done)load average $LOADAVG_START at start, $LOADAVG_END at end."
  if ((${#PROBLEMS[@]})); then
    echo
    echo "PROBLEMS:"
    for x in "${PROBLEMS[@]}"; do echo "- $x"; done
  fi
} >"$MARKDOWN"
echo
cat "$MARKDOWN"
if [ -n "$TORII_CACHE_METRICS" ]; then
  echo
  echo "Torii's cache metrics at the end ($WORK/metrics-torii.txt):"
  while IFS= read -r line; do echo "  $line"; done <<<"$TORII_CACHE_METRICS"
fi
echo
echo "Every run:"
column -t -s $'\t' "$RUNS" 2>/dev/null || cat "$RUNS"
echo

# ---------------------------------------------------------------- JSON
j() { [ "$1" = nan ] && echo null || echo "$1"; }
jr() { # "median min max" -> JSON object
  local m lo hi
  read -r m lo hi <<<"$1"
  printf '{"median": %s, "min": %s, "max": %s}' "$(j "$m")" "$(j "$lo")" "$(j "$hi")"
}
{
  printf '{\n  "benchmark": "cache",\n  "timestamp": %s,\n' "$(bench_json_str "$(date -Iseconds)")"
  printf '  "command": %s,\n  "machine": %s,\n' "$(bench_json_str "$COMMAND")" "$(bench_json_str "$MACHINE")"
  printf '  "loadavg_start": %s,\n  "loadavg_end": %s,\n' "$(bench_json_str "$LOADAVG_START")" "$(bench_json_str "$LOADAVG_END")"
  printf '  "git": {"rev": %s, "dirty": %s, "modified_files": %s},\n' "$(bench_json_str "$GIT_REV")" "$GIT_DIRTY" \
    "$(bench_json_str "$GIT_DIRTY_FILES")"
  printf '  "torii": {"skipped": %s, "bin": %s, "version": %s, "build_type": %s, "sha256_prefix": %s},\n' \
    "$([ "$SKIP_TORII" = 1 ] && echo true || echo false)" "$(bench_json_str "$TORII_BIN")" \
    "$(bench_json_str "$TORII_VERSION")" "$(bench_json_str "${TORII_BUILD_TYPE:-unknown}")" "$(bench_json_str "$TORII_SHA")"
  printf '  "nginx_version": %s,\n  "wrk_version": %s,\n' "$(bench_json_str "$NGINX_VERSION")" "$(bench_json_str "$WRK_VERSION")"
  printf '  "servers": {"nginx-return": %s, "nginx-cache": %s, "torii": %s},\n' \
    "$(bench_json_str "nginx, 1 worker, return 200 with the body (the floor)")" \
    "$(bench_json_str "nginx, 1 worker, proxy_cache (proxy_cache_valid 200 1h) in front of the origin, warm")" \
    "$(bench_json_str "torii, workers 1, route cache ttl 1h, prewarm $CACHE_PATH, access log off, stats on, warm")"
  printf '  "params": {"rounds": %d, "duration": "%s", "warmup": "%s", "threads": %d, "connections": %d, "body_bytes": %d, "path": %s, "torii_route_host": %s, "warm_requests": %d, "proxy_cpu": %d, "load_cpu": %d, "clk_tck": %d},\n' \
    "$ROUNDS" "$DURATION" "$WARMUP" "$THREADS" "$CONNECTIONS" "$BODY_BYTES" "$(bench_json_str "$CACHE_PATH")" \
    "$(bench_json_str "$TORII_ROUTE_HOST")" "$WARM_REQUESTS" "$PROXY_CPU" "$LOAD_CPU" "$CLK_TCK"
  printf '  "median": {\n'
  sep=""
  for s in "${SERVERS[@]}"; do
    printf '%s    "%s": {' "$sep" "$s"
    sep2=""
    for m in "${METRICS[@]}"; do
      printf '%s"%s": %s' "$sep2" "$m" "$(j "${MED[$s.$m]}")"
      sep2=", "
    done
    printf ', "origin_requests_total": %s}' "${ORIGIN_REQ[$s]}"
    sep=$',\n'
  done
  printf '\n  },\n'
  for b in nginx-cache nginx-return; do
    printf '  "ratio_torii_over_%s": {"rps": %s, "p50": %s, "p99": %s, "cpu_us_per_req": %s, "user_instructions_per_req": %s},\n' \
      "${b//-/_}" "$(j "${R[$b.rps]}")" "$(j "${R[$b.p50_us]}")" "$(j "${R[$b.p99_us]}")" "$(j "${R[$b.cpu_us_per_req]}")" "$(j "${R[$b.ir]}")"
    printf '  "ratio_torii_over_%s_per_round": {"rps": %s, "cpu_us_per_req": %s},\n' "${b//-/_}" \
      "$(jr "${P[$b.rps]}")" "$(jr "${P[$b.cpu_us_per_req]}")"
  done
  printf '  "callgrind_user_instructions_per_request": {"nginx-return": %s, "nginx-cache": %s, "torii": %s},\n' \
    "$(j "${IR_PER_REQ[nginx-return]}")" "$(j "${IR_PER_REQ[nginx-cache]}")" "$(j "${IR_PER_REQ[torii]}")"
  printf '  "targets": {"rps_torii_over_nginx_cache_min": %s, "cpu_torii_over_nginx_return_max": %s, "rps": "%s", "cpu": "%s"},\n' \
    "$TARGET_RPS_VS_CACHE" "$TARGET_CPU_VS_RETURN" "$V_RPS" "$V_CPU"
  printf '  "checks": {'
  sep=""
  for s in "${SERVERS[@]}"; do
    printf '%s"%s": {"first_answer": %s, "warm_answer": %s, "end_answer": %s, "response_header_bytes": %s}' "$sep" "$s" \
      "$(bench_json_str "${FIRST_STATUS[$s]}")" "$(bench_json_str "${WARM_STATUS[$s]}")" \
      "$(bench_json_str "${END_STATUS[$s]:-}")" "${HEADER_BYTES[$s]}"
    sep=", "
  done
  printf ', "origin_requests_since_start": %s, "torii_log_lines": %s, "torii_metrics_cache_hits": %s, "torii_wrk_requests_measured": %s, "torii_cache_metrics": %s},\n' \
    "$ORIGIN_REQUESTS_TOTAL" "$TORII_LOG_LINES" "$(j "$METRICS_HITS")" "$WRK_REQ_TORII" "$(bench_json_str "$TORII_CACHE_METRICS")"
  printf '  "noisy_runs": %d,\n  "noisy_pct": %s,\n' "$NOISY_RUNS" "$NOISY_PCT"
  printf '  "median_over": {'
  sep=""
  for s in "${SERVERS[@]}"; do
    printf '%s"%s": "%s"' "$sep" "$s" "$([ "${CLEAN_ONLY[$s]}" = 1 ] && echo "${CLEAN_COUNT[$s]} clean runs" || echo "all runs")"
    sep=", "
  done
  printf '},\n  "runs": [\n'
  bench_json_runs_and_status "$RUNS"
} >"$SUMMARY"
if command -v jq >/dev/null 2>&1; then jq empty "$SUMMARY" || bench_warn "summary is not valid JSON: $SUMMARY"; fi
echo "summary: $SUMMARY"
echo "markdown: $MARKDOWN"
echo "work dir: $WORK"
echo "command: $COMMAND"
exit "$FAILED"
