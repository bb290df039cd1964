#!/usr/bin/env bash
# bench/tls_bench.sh: TLS termination, Torii vs nginx, side by side.
#
# One nginx origin answers GET / with a fixed 1 KiB body over plain HTTP. Two
# TLS-terminating reverse proxies in front of it, each with one worker pinned
# to the same core, both running the whole time: nginx and Torii, with the
# same ECDSA P-256 certificate (made by this script with openssl), TLS 1.2 and
# 1.3, the same TLS 1.3 suites in the same order, and keep-alive connections
# to the origin. wrk drives each proxy in turn over HTTPS, in interleaved
# rounds, in these scenarios:
#
#   keepalive  keep-alive HTTPS requests: req/s over 64 long-lived connections
#              (a handshake per connection, at the start of the run only)
#   handshake  a new TLS connection, with a FULL handshake, per request:
#              wrk -H "Connection: close" against a second listener of each
#              proxy that has session resumption off. (wrk offers the session
#              of the previous connection when it reconnects, so against a
#              listener with session tickets on most connections would be
#              resumed, not full handshakes.)
#   resumed    (only if listed in SCENARIOS) a new TLS connection per request
#              against the listener with tickets on: the handshakes that wrk
#              can resume are resumed; the split is counted and reported
#
# Before measuring, the script checks that each listener of both proxies
# answers 200 over HTTPS (curl, verifying the certificate) with exactly the
# origin's body, which protocol, suite and key exchange each proxy negotiates
# (openssl s_client: the same OpenSSL defaults as wrk), and that a session
# resumes on the listener with tickets and does not on the one without; it
# stops with an error otherwise. Each run then counts, on the proxies
# themselves, the connections they accepted (Torii: torii_connections_accepted_total
# and torii_tls_handshakes_total{result="full"|"resumed"} on /metrics of its
# admin listener; nginx: "accepts" of stub_status) and the connections opened
# to the origin (the origin's stub_status): a handshake run must show one new
# connection, and for Torii one full handshake, per request; a keep-alive run
# no reconnects; and neither proxy may open new connections to the origin.
# Prints the medians of req/s, p50/p99 latency and proxy CPU time per request
# (user+system of the proxy's whole process tree, from /proc) per scenario,
# and the Torii/nginx ratios (req/s target >= 1.0 in keepalive and handshake).
# The method is proxy_bench.sh's (bench/README.md).
#
# Usage:   bench/tls_bench.sh                   # full: 3 rounds of 10 s each
#          QUICK=1 bench/tls_bench.sh           # smoke test: 1 round of 3 s
#          ROUNDS=5 DURATION=10s bench/tls_bench.sh
#          SCENARIOS="keepalive handshake resumed" QUICK=1 bench/tls_bench.sh
#
# Environment (defaults in brackets): as proxy_bench.sh (ROUNDS [3],
# DURATION [10s], WARMUP [2s], CONNECTIONS [64], THREADS [1], BODY_BYTES
# [1024], PROXY_CPU [0], LOAD_CPU [1], NGINX_BIN, RESULTS_DIR, QUIET_MAX_PCT
# [15], QUIET_WAIT [120], NOISY_PCT [10], NOISY_RETRIES [2], QUICK), plus
#   TORII_BIN [<repo>/build/gateway/torii]  the binary to measure; this script
#                     does not build it (scripts/build.sh release does)
#   PORT_BASE [18900] first port tried (free ones are picked)
#   SCENARIOS ["keepalive handshake"]  which scenarios, in this order within
#                     a round (keepalive, handshake, resumed)
#
# Output: the tables on stdout; bench/results/tls-<timestamp>.json (summary
# and every run), bench/results/tls-<timestamp>.md (the tables, in Markdown),
# bench/results/tls-<timestamp>/ (certificate, configs, logs, raw wrk
# outputs, s_client outputs, /metrics). Exit status: 0 if every run was clean,
# 1 if a run had socket errors or non-2xx responses, a proxy died, or the
# connection/handshake counts show that a run did not measure what it should
# (the targets do not change it).
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
PORT_BASE=${PORT_BASE:-18900}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/results}
TORII_BIN=${TORII_BIN:-$REPO/build/gateway/torii}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
SCENARIOS=${SCENARIOS:-keepalive handshake}
# Below this proxy CPU % (of one core) in a scenario, for both proxies, the
# tables say that the client, not the proxy, was the limit.
BOTTLENECK_PCT=90
# Torii's default TLS 1.3 suites, in its order (docs/CONFIG.md, TLS). nginx
# gets the same list with server preference, as Torii has, so that both
# negotiate the same suite with wrk.
TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256

bench_check_run_parameters
if ! [[ $BODY_BYTES =~ ^[0-9]+$ ]] || ((BODY_BYTES < 1 || BODY_BYTES > 65536)); then
  bench_die "BODY_BYTES must be 1..65536 (the body is inlined in the origin's config)"
fi
if ! [[ $CONNECTIONS =~ ^[0-9]+$ ]] || ((CONNECTIONS < 1)); then bench_die "CONNECTIONS must be a positive integer"; fi
read -r -a SCEN <<<"$SCENARIOS"
((${#SCEN[@]})) || bench_die "SCENARIOS is empty"
for s in "${SCEN[@]}"; do
  case $s in keepalive | handshake | resumed) ;; *) bench_die "unknown scenario \"$s\" (keepalive, handshake, resumed)" ;; esac
done
SERVERS=(nginx torii)

COMMAND="ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS THREADS=$THREADS"
[ "${QUICK:-0}" = 1 ] && COMMAND="QUICK=1 $COMMAND"
[ "$SCENARIOS" != "keepalive handshake" ] && COMMAND="SCENARIOS=\"$SCENARIOS\" $COMMAND"
[ "$TORII_BIN" != "$REPO/build/gateway/torii" ] && COMMAND="$COMMAND TORII_BIN=$TORII_BIN"
COMMAND="$COMMAND bench/tls_bench.sh"

bench_require wrk taskset curl awk sort cmp timeout getconf wc openssl
[ -x "$NGINX_BIN" ] || bench_die "nginx not found (set NGINX_BIN)"
bench_check_cores proxies

# ---------------------------------------------------------------- torii binary
# Not built here: the binary of a release build (scripts/build.sh release),
# or TORII_BIN.
if [ ! -x "$TORII_BIN" ]; then
  bench_die "torii binary not found: $TORII_BIN
  build it first:  scripts/build.sh release   (-> build/gateway/torii)
  or point TORII_BIN at one"
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

# ---------------------------------------------------------------- work dir
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$RESULTS_DIR"
WORK="$RESULTS_DIR/tls-$STAMP"
SUMMARY="$RESULTS_DIR/tls-$STAMP.json"
MARKDOWN="$RESULTS_DIR/tls-$STAMP.md"
mkdir -p "$WORK"/{origin-tmp,nginx-tls-tmp,wrk,tls}
chmod 755 "$WORK" "$WORK"/origin-tmp "$WORK"/nginx-tls-tmp # nginx workers may run as nobody
RUNS="$WORK/runs.tsv"
PROBLEMS=()

# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
  local rc=$1
  if ((rc != 0)); then bench_log "work dir (configs, logs, wrk outputs): $WORK"; fi
}
bench_install_traps on_exit

# ---------------------------------------------------------------- certificate
# One self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost, served
# by both proxies (the masters read the key before the workers start).
CERT="$WORK/tls/cert.pem"
KEY="$WORK/tls/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -nodes -days 7 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$KEY" -out "$CERT" >"$WORK/tls/openssl-req.log" 2>&1 ||
  { cat "$WORK/tls/openssl-req.log" >&2; bench_die "openssl could not make the certificate"; }
chmod 600 "$KEY"
CERT_INFO=$(openssl x509 -in "$CERT" -noout -text | awk '
  /Public Key Algorithm:/ { sub(/^[^:]*: */, ""); alg = $0 }
  /NIST CURVE:/ { sub(/^[^:]*: */, ""); curve = $0 }
  /Signature Algorithm:/ && !sig { sub(/^[^:]*: */, ""); sig = $0 }
  END { printf "%s %s, signed %s", alg, curve, sig }')
CERT_SHA256=$(openssl x509 -in "$CERT" -noout -fingerprint -sha256 | sed 's/^.*=//')
bench_log "certificate: $CERT ($CERT_INFO)"

# ---------------------------------------------------------------- configs
ORIGIN_PORT=$(bench_pick_port "$PORT_BASE") || bench_die "no free port"
USED=("$ORIGIN_PORT")
pick() { # -> PICKED, a free port not used yet (no subshell: USED must grow)
  PICKED=$(bench_pick_port $((USED[-1] + 1)) "${USED[@]}") || bench_die "no free port"
  USED+=("$PICKED")
}
declare -A PORT_OF NOTICKET_PORT_OF PID_OF LOG_OF
pick; ORIGIN_STATUS_PORT=$PICKED
for s in "${SERVERS[@]}"; do
  pick; PORT_OF[$s]=$PICKED
  pick; NOTICKET_PORT_OF[$s]=$PICKED
done
pick; NGINX_STATUS_PORT=$PICKED
pick; TORII_ADMIN_PORT=$PICKED

# A fixed body: hex digits, no character nginx would treat specially.
BODY=$(awk -v n="$BODY_BYTES" 'BEGIN { s = ""; while (length(s) < n) s = s "0123456789abcdef"; printf "%s", substr(s, 1, n) }')
printf '%s' "$BODY" >"$WORK/expected-body"

bench_render "$BENCH_DIR/nginx-tls-origin.conf.tmpl" "$WORK/origin.conf" \
  DIR="$WORK" ORIGIN_PORT="$ORIGIN_PORT" STATUS_PORT="$ORIGIN_STATUS_PORT" BODY="$BODY"
bench_render "$BENCH_DIR/nginx-tls.conf.tmpl" "$WORK/nginx-tls.conf" \
  DIR="$WORK" ORIGIN_PORT="$ORIGIN_PORT" TLS_PORT="${PORT_OF[nginx]}" NOTICKET_PORT="${NOTICKET_PORT_OF[nginx]}" \
  STATUS_PORT="$NGINX_STATUS_PORT" CERT="$CERT" KEY="$KEY" TLS13_SUITES="$TLS13_SUITES"
bench_render "$BENCH_DIR/torii-tls.json.tmpl" "$WORK/torii.json" \
  ORIGIN_PORT="$ORIGIN_PORT" TLS_PORT="${PORT_OF[torii]}" NOTICKET_PORT="${NOTICKET_PORT_OF[torii]}" \
  ADMIN_PORT="$TORII_ADMIN_PORT" CERT="$CERT" KEY="$KEY"
LOG_OF=([nginx]="$WORK/nginx-tls-error.log" [torii]="$WORK/torii.log")

"$NGINX_BIN" -t -q -p "$WORK" -c "$WORK/origin.conf" >"$WORK/origin-t.log" 2>&1 ||
  { cat "$WORK/origin-t.log" >&2; bench_die "origin config rejected (this nginx needs the stub_status module)"; }
"$NGINX_BIN" -t -q -p "$WORK" -c "$WORK/nginx-tls.conf" >"$WORK/nginx-tls-t.log" 2>&1 ||
  { cat "$WORK/nginx-tls-t.log" >&2; bench_die "nginx TLS config rejected (this nginx needs the ssl and stub_status modules)"; }
"$TORII_BIN" -t -c "$WORK/torii.json" >"$WORK/torii-t.log" 2>&1 || {
  cat "$WORK/torii-t.log" >&2
  bench_die "torii rejected the TLS config $WORK/torii.json (does $TORII_BIN have TLS? rebuild with scripts/build.sh release)"
}

# ---------------------------------------------------------------- start
bench_log "origin 127.0.0.1:$ORIGIN_PORT (core $LOAD_CPU); $(for s in "${SERVERS[@]}"; do
  printf '%s https://127.0.0.1:%s (tickets) and :%s (no tickets), ' "$s" "${PORT_OF[$s]}" "${NOTICKET_PORT_OF[$s]}"
done)(core $PROXY_CPU)"
bench_start origin "$LOAD_CPU" "$WORK/origin.log" "$NGINX_BIN" -p "$WORK" -c "$WORK/origin.conf"
ORIGIN_PID=$BENCH_LAST_PID
bench_wait_port 127.0.0.1 "$ORIGIN_PORT" 10 "$ORIGIN_PID" ||
  { cat "$WORK/origin.log" "$WORK/origin-error.log" >&2 2>/dev/null; bench_die "origin did not start"; }
bench_start nginx "$PROXY_CPU" "$WORK/nginx-tls.log" "$NGINX_BIN" -p "$WORK" -c "$WORK/nginx-tls.conf"
PID_OF[nginx]=$BENCH_LAST_PID
bench_start torii "$PROXY_CPU" "$WORK/torii.log" "$TORII_BIN" -c "$WORK/torii.json"
PID_OF[torii]=$BENCH_LAST_PID
for s in "${SERVERS[@]}"; do
  for port in "${PORT_OF[$s]}" "${NOTICKET_PORT_OF[$s]}"; do
    bench_wait_port 127.0.0.1 "$port" 15 "${PID_OF[$s]}" ||
      { tail -n 50 "${LOG_OF[$s]}" "$WORK/$s"*.log >&2 2>/dev/null; bench_die "$s did not start (port $port)"; }
  done
done
bench_wait_port 127.0.0.1 "$TORII_ADMIN_PORT" 10 "${PID_OF[torii]}" ||
  { tail -n 50 "$WORK/torii.log" >&2; bench_die "torii's admin listener did not start"; }
for ((i = 0; i < 150; i++)); do
  [ "$(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TORII_ADMIN_PORT/readyz" 2>/dev/null)" = 200 ] && break
  sleep 0.1
done

# ---------------------------------------------------------------- checks
# Correctness first: every listener must answer 200 over HTTPS, with our
# certificate (curl verifies it against cert.pem), and exactly the body.
code=$(curl -sS --max-time 5 -o "$WORK/check-origin.body" -w '%{http_code}' "http://127.0.0.1:$ORIGIN_PORT/") ||
  bench_die "origin: curl failed"
[ "$code" = 200 ] || bench_die "origin: GET / answered $code, want 200"
cmp -s "$WORK/check-origin.body" "$WORK/expected-body" || bench_die "origin: body differs from the expected one"
check_https() { # NAME PORT TAG
  local name=$1 port=$2 tag=$3 out
  out=$(curl -sS --max-time 5 --cacert "$CERT" -D "$WORK/headers-$name-$tag.txt" -o "$WORK/check-$name-$tag.body" \
    -w '%{http_code} HTTP/%{http_version}' "https://127.0.0.1:$port/" 2>"$WORK/check-$name-$tag.err") || {
    cat "$WORK/check-$name-$tag.err" >&2
    tail -n 20 "${LOG_OF[$name]}" >&2 2>/dev/null || true
    bench_die "$name: GET https://127.0.0.1:$port/ failed: no answer over TLS"
  }
  [ "${out%% *}" = 200 ] || { cat "$WORK/headers-$name-$tag.txt" >&2; bench_die "$name: GET https://127.0.0.1:$port/ answered ${out%% *}, want 200"; }
  cmp -s "$WORK/check-$name-$tag.body" "$WORK/expected-body" ||
    bench_die "$name: body over TLS (port $port) differs from the origin's ($(wc -c <"$WORK/check-$name-$tag.body") bytes, want $BODY_BYTES)"
  bench_log "$name https://127.0.0.1:$port/ ($tag): ${out#* } 200, $BODY_BYTES-byte body"
}
for s in "${SERVERS[@]}"; do
  check_https "$s" "${PORT_OF[$s]}" tickets
  check_https "$s" "${NOTICKET_PORT_OF[$s]}" notickets
done

# What each proxy negotiates with a client that has OpenSSL's defaults, as
# wrk does (protocol, suite, key exchange, signature), and whether a session
# resumes: a first connection saves its session (with the tickets it got
# after the response), a second one offers it.
S_CLIENT_REQ=$'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
s_client() { # PORT OUT [openssl s_client options...]
  local port=$1 out=$2
  shift 2
  printf '%s' "$S_CLIENT_REQ" | timeout 10 openssl s_client -connect "127.0.0.1:$port" -ign_eof "$@" >"$out" 2>&1 || true
}
tls_field() { # FILE WHAT -> protocol|cipher|reuse|group|sigtype
  awk -v w="$2" '
    /^(New|Reused), / { split($0, f, ", "); reuse = f[1]; proto = f[2]; c = f[3]; sub(/^Cipher is /, "", c); cipher = c }
    /^Server Temp Key:/ { g = $0; sub(/^Server Temp Key: */, "", g); sub(/,.*$/, "", g); group = g }
    /^Peer signature type:/ { t = $0; sub(/^[^:]*: */, "", t); sig = t }
    END {
      v = (w == "protocol") ? proto : (w == "cipher") ? cipher : (w == "reuse") ? reuse : (w == "group") ? group : sig
      print (v == "") ? "?" : v
    }' "$1"
}
declare -A NEGOTIATED RESUMES
for s in "${SERVERS[@]}"; do
  for kind in tickets notickets; do
    port=${PORT_OF[$s]}
    [ "$kind" = notickets ] && port=${NOTICKET_PORT_OF[$s]}
    s_client "$port" "$WORK/tls/s_client-$s-$kind-1.txt" -sess_out "$WORK/tls/session-$s-$kind.pem"
    grep -q '^HTTP/1.1 200' "$WORK/tls/s_client-$s-$kind-1.txt" ||
      { tail -n 20 "$WORK/tls/s_client-$s-$kind-1.txt" >&2; bench_die "$s: openssl s_client got no 200 on port $port"; }
    RESUMES[$s.$kind]=no
    if [ -s "$WORK/tls/session-$s-$kind.pem" ]; then
      s_client "$port" "$WORK/tls/s_client-$s-$kind-2.txt" -sess_in "$WORK/tls/session-$s-$kind.pem"
      [ "$(tls_field "$WORK/tls/s_client-$s-$kind-2.txt" reuse)" = Reused ] && RESUMES[$s.$kind]=yes
    fi
  done
  f="$WORK/tls/s_client-$s-tickets-1.txt"
  NEGOTIATED[$s]="$(tls_field "$f" protocol) $(tls_field "$f" cipher) $(tls_field "$f" group) $(tls_field "$f" sigtype)"
  bench_log "$s negotiates ${NEGOTIATED[$s]}; a session resumes: ${RESUMES[$s.tickets]} with tickets, ${RESUMES[$s.notickets]} without"
done
TLS_SAME=true
if [ "${NEGOTIATED[nginx]}" != "${NEGOTIATED[torii]}" ]; then
  TLS_SAME=false
  PROBLEMS+=("the proxies negotiate different TLS parameters: nginx ${NEGOTIATED[nginx]}, torii ${NEGOTIATED[torii]}")
  bench_warn "the proxies negotiate different TLS parameters: nginx ${NEGOTIATED[nginx]}, torii ${NEGOTIATED[torii]}"
fi
for s in "${SERVERS[@]}"; do
  [ "${RESUMES[$s.notickets]}" = no ] ||
    bench_die "$s resumed a session on its listener without tickets (port ${NOTICKET_PORT_OF[$s]}): the handshake scenario would not measure full handshakes"
  if [ "${RESUMES[$s.tickets]}" != yes ]; then
    [[ " ${SCEN[*]} " == *" resumed "* ]] &&
      bench_die "$s did not resume a session on its listener with tickets (port ${PORT_OF[$s]}): the resumed scenario would not mean anything"
    bench_warn "$s did not resume a session on its listener with tickets (port ${PORT_OF[$s]})"
  fi
done

TORII_VERSION=$("$TORII_BIN" --version 2>/dev/null || echo unknown)
TORII_SHA=$(sha256sum "$TORII_BIN" | cut -c1-16)
TORII_LIBSSL=$( (ldd "$TORII_BIN" 2>/dev/null || true) | awk '/libssl/ { print $1; exit }')
NGINX_VERSION=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')
NGINX_OPENSSL=$("$NGINX_BIN" -V 2>&1 | awk '/^built with / { sub(/^built with /, ""); print; exit }')
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }')
OPENSSL_VERSION=$(openssl version 2>/dev/null || echo unknown)
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY_FILES=$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | awk '{ print $NF }' | paste -sd' ' - || true)
GIT_DIRTY=$([ -n "$GIT_DIRTY_FILES" ] && echo true || echo false)
CLK_TCK=$(bench_clk_tck)
MACHINE=$(bench_machine_info)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

bench_log "machine: $MACHINE; load average $LOADAVG_START"
bench_log "git $GIT_REV$([ "$GIT_DIRTY" = true ] && echo " + uncommitted changes in: $GIT_DIRTY_FILES")"
bench_log "torii: $TORII_BIN ($TORII_VERSION, ${TORII_BUILD_TYPE:-build type unknown}, sha256 $TORII_SHA..., ${TORII_LIBSSL:-libssl ?})"
bench_log "nginx $NGINX_VERSION ($NGINX_OPENSSL); wrk $WRK_VERSION; $OPENSSL_VERSION"
for s in "${SERVERS[@]}"; do bench_log "tree of $s: $(bench_tree_pids "${PID_OF[$s]}" | tr '\n' ' ')"; done

# ---------------------------------------------------------------- counters
# Read between runs only (outside the measured window): the connections each
# proxy accepted and Torii's handshakes per listener. The stub_status answers
# count their own connection (the one after a run: 1 too many).
stub_accepts() { # PORT -> "accepts" of nginx's stub_status, or nan
  curl -sS --max-time 5 "http://127.0.0.1:$1/" 2>/dev/null | awk 'NR == 3 && $1 ~ /^[0-9]+$/ { print $1; ok = 1 } END { if (!ok) print "nan" }'
}
TORII_METRICS="$WORK/.metrics"
torii_scrape() { curl -sS --max-time 5 -o "$TORII_METRICS" "http://127.0.0.1:$TORII_ADMIN_PORT/metrics" 2>/dev/null || : >"$TORII_METRICS"; }
torii_value() { # METRIC [LISTENER RESULT] -> the counter from the last scrape (0 if absent: zero series are omitted)
  awk -v m="$1" -v l="${2:-}" -v r="${3:-}" '
    index($0, m) == 1 && (substr($0, length(m) + 1, 1) == " " || substr($0, length(m) + 1, 1) == "{") &&
      (l == "" || index($0, "listener=\"" l "\"")) && (r == "" || index($0, "result=\"" r "\"")) { s += $NF }
    END { printf "%.0f\n", s }' "$TORII_METRICS"
}
# counters SERVER LISTENER_PORT -> "connections full resumed failed origin_connections"
counters() {
  local s=$1 port=$2 conns full=nan res=nan fail=nan
  if [ "$s" = torii ]; then
    torii_scrape
    conns=$(torii_value torii_connections_accepted_total)
    full=$(torii_value torii_tls_handshakes_total "127.0.0.1:$port" full)
    res=$(torii_value torii_tls_handshakes_total "127.0.0.1:$port" resumed)
    fail=$(torii_value torii_tls_handshakes_total "127.0.0.1:$port" failed)
  else
    conns=$(stub_accepts "$NGINX_STATUS_PORT")
  fi
  echo "$conns $full $res $fail $(stub_accepts "$ORIGIN_STATUS_PORT")"
}
delta() { # BEFORE AFTER [CORRECTION] -> AFTER - BEFORE - CORRECTION, or nan
  awk -v a="$1" -v b="$2" -v c="${3:-0}" 'BEGIN { if (a == "nan" || b == "nan") print "nan"; else print b - a - c }'
}

# ---------------------------------------------------------------- runs
# bench_measure_run runs wrk through bench_wrk: this wrapper puts WRK_EXTRA
# (the "Connection: close" header of the handshake scenarios) in front of its
# arguments. Empty for keep-alive runs.
eval "lib_$(declare -f bench_wrk)"
WRK_EXTRA=()
bench_wrk() {
  local out=$1 cpus=$2
  shift 2
  lib_bench_wrk "$out" "$cpus" "${WRK_EXTRA[@]}" "$@"
}

port_for() { # SCENARIO SERVER
  if [ "$1" = handshake ]; then echo "${NOTICKET_PORT_OF[$2]}"; else echo "${PORT_OF[$2]}"; fi
}
NAMES=()
for sc in "${SCEN[@]}"; do for s in "${SERVERS[@]}"; do NAMES+=("$sc-$s"); done; done

EXTRA_COLUMNS=$'user_us_per_req\tsys_us_per_req\tnew_connections\tconnections_per_req\tfull_handshakes\tresumed_handshakes\tfailed_handshakes\torigin_new_connections'
printf 'run\tround\t%s\t%s\n' "$BENCH_RUN_COLUMNS" "$EXTRA_COLUMNS" >"$RUNS"
FAILED=0

problem() { # TEXT: a run that did not measure what it should
  PROBLEMS+=("$1")
  FAILED=1
  bench_warn "$1"
}

# run_one SCENARIO-SERVER ROUND DURATION: one wrk run (bench_measure_run),
# the proxy's connection and handshake counts around it, and their checks;
# ROUND "warmup" is not recorded.
run_one() {
  local name=$1 round=$2 dur=$3 sc=${1%-*} s=${1##*-} port c0 c1 conns cpr full res fail ocon slack
  port=$(port_for "$sc" "$s")
  WRK_EXTRA=()
  [ "$sc" = keepalive ] || WRK_EXTRA=(-H "Connection: close")
  read -r -a c0 <<<"$(counters "$s" "$port")"
  if ! bench_measure_run "$name" "$round" "$dur" "https://127.0.0.1:$port/" "${PID_OF[$s]}" "${LOG_OF[$s]}"; then
    WRK_EXTRA=()
    return 1
  fi
  WRK_EXTRA=()
  sleep 0.3 # let the proxy finish with the connections wrk left
  read -r -a c1 <<<"$(counters "$s" "$port")"
  conns=$(delta "${c0[0]}" "${c1[0]}" "$([ "$s" = nginx ] && echo 1 || echo 0)")
  full=$(delta "${c0[1]}" "${c1[1]}")
  res=$(delta "${c0[2]}" "${c1[2]}")
  fail=$(delta "${c0[3]}" "${c1[3]}")
  ocon=$(delta "${c0[4]}" "${c1[4]}" 1)
  cpr=$(awk -v c="$conns" -v n="$BR_REQ" 'BEGIN { if (c == "nan" || n + 0 <= 0) print "nan"; else printf "%.4f\n", c / n }')
  if [ "$round" = warmup ]; then
    bench_log "warm-up $name: $BR_RPS req/s, $conns connection(s)$([ "$s" = torii ] && echo ", $full full + $res resumed handshake(s)")"
    return 0
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$(bench_run_fields)" "$BR_USER_US" "$BR_SYS_US" \
    "$conns" "$cpr" "$full" "$res" "$fail" "$ocon" >>"$RUNS"
  bench_log "$(printf 'round %s %-15s %9s req/s  p50 %6.0f us  p99 %6.0f us  cpu %6s us/req  proxy cpu %5s%%  wrk cpu %5s%%  conns %s%s  other %s%%%s' \
    "$round" "$name" "$BR_RPS" "$BR_P50" "$BR_P99" "$BR_CPU_US" "$BR_UTIL" "$BR_WRK_PCT" "$conns" \
    "$([ "$s" = torii ] && echo " (full $full, resumed $res)")" "$BR_OTHER" "$([ "$BR_NOISY" = yes ] && echo '  NOISY')")"

  # Did the run measure what it should?
  [[ $BR_REQ =~ ^[0-9]+$ ]] && ((BR_REQ > 0)) || return 0
  slack=$((2 * CONNECTIONS + 16)) # connections open or being opened when wrk stopped
  if [ "$conns" = nan ]; then
    problem "$name round $round: could not read the proxy's connection count"
  elif [ "$sc" = keepalive ]; then
    ((conns <= CONNECTIONS + CONNECTIONS / 2 + 4)) ||
      problem "$name round $round: $conns new connections for $CONNECTIONS wrk connections: keep-alive connections were closed during the run"
  else
    ((conns >= BR_REQ && conns <= BR_REQ + slack)) ||
      problem "$name round $round: $conns new connections for $BR_REQ requests: not one connection per request"
  fi
  if [ "$s" = torii ] && [ "$sc" = handshake ]; then
    ((full >= BR_REQ && res == 0)) ||
      problem "$name round $round: $full full and $res resumed handshakes for $BR_REQ requests: not a full handshake per request"
  fi
  if [ "$s" = torii ] && [ "$sc" = keepalive ]; then
    ((full + res <= CONNECTIONS + CONNECTIONS / 2 + 4)) ||
      problem "$name round $round: $((full + res)) handshakes for $CONNECTIONS wrk connections"
  fi
  if [ "$ocon" = nan ]; then
    problem "$name round $round: could not read the origin's connection count"
  elif ((ocon > CONNECTIONS + BR_REQ / 100)); then
    problem "$name round $round: $ocon new connections to the origin for $BR_REQ requests: the upstream connections were not kept alive"
  fi
  return 0
}

bench_log "warm-up: $WARMUP per scenario and proxy"
for n in "${NAMES[@]}"; do run_one "$n" warmup "$WARMUP" || true; done
bench_log "measuring: $ROUNDS round(s) of $DURATION, -t$THREADS -c$CONNECTIONS, order ${NAMES[*]}"
bench_run_rounds run_one "$ROUNDS" "$DURATION" "${NAMES[@]}"
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

# Still answering over TLS at the end?
for s in "${SERVERS[@]}"; do
  if bench_alive "${PID_OF[$s]}"; then
    check_https "$s" "${PORT_OF[$s]}" end
  fi
done

# Torii's log at level warn should be empty in a clean run; its /metrics are kept.
TORII_LOG_LINES=$(grep -c . "$WORK/torii.log" || true)
e=$(grep -c 'level=error' "$WORK/torii.log" || true)
if ((TORII_LOG_LINES > 0)); then
  bench_warn "torii wrote $TORII_LOG_LINES log line(s) at level >= warn ($e error); first ones:"
  head -n 10 "$WORK/torii.log" >&2
  ((e == 0)) || { PROBLEMS+=("torii logged $e error line(s), see $WORK/torii.log"); FAILED=1; }
fi
NGINX_LOG_LINES=$(grep -c . "$WORK/nginx-tls-error.log" 2>/dev/null || true)
((NGINX_LOG_LINES == 0)) || bench_warn "nginx wrote $NGINX_LOG_LINES error-log line(s): $WORK/nginx-tls-error.log"
torii_scrape
cp "$TORII_METRICS" "$WORK/metrics-torii.txt"
TORII_TLS_METRICS=$(grep -E '^torii_(tls_handshakes_total|connections_accepted_total)[{ ]' "$WORK/metrics-torii.txt" || true)

# ---------------------------------------------------------------- summary
declare -A CLEAN_ONLY CLEAN_COUNT
for n in "${NAMES[@]}"; do
  c=$(awk -F'\t' -v p="$n" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "noisy") k = i; next }
    $1 == p && $k == "no" { c++ } END { print c + 0 }' "$RUNS")
  if ((c > 0)); then CLEAN_ONLY[$n]=1; else CLEAN_ONLY[$n]=0; fi
  CLEAN_COUNT[$n]=$c
done
col() { # NAME COLUMN -> median over the clean runs (all runs if none is clean)
  awk -F'\t' -v p="$1" -v c="$2" -v clean="${CLEAN_ONLY[$1]:-0}" '
    NR == 1 { for (i = 1; i <= NF; i++) { if ($i == c) k = i; if ($i == "noisy") q = i }; next }
    $1 == p && $k != "nan" && (!clean || $q == "no") { print $k }' "$RUNS" | bench_median
}
declare -A MED
METRICS=(rps p50_us p99_us cpu_us_per_req user_us_per_req sys_us_per_req proxy_cpu_pct origin_cpu_us_per_req
  core_proxy_busy_pct core_load_busy_pct steal_pct wrk_cpu_pct other_cpu_pct connections_per_req
  full_handshakes resumed_handshakes origin_new_connections)
for n in "${NAMES[@]}"; do
  for m in "${METRICS[@]}"; do MED[$n.$m]=$(col "$n" "$m"); done
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
verdict() { # VALUE OP LIMIT
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "nan") { print "n/a"; exit }
    ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "met" : "NOT met" }'
}
TARGET_RPS=1.0
declare -A R P V CLIENT_BOUND # CLIENT_BOUND: neither proxy used BOTTLENECK_PCT % of its core
for sc in "${SCEN[@]}"; do
  for m in rps p50_us p99_us cpu_us_per_req; do R[$sc.$m]=$(bench_ratio "${MED[$sc-torii.$m]}" "${MED[$sc-nginx.$m]}"); done
  for m in rps cpu_us_per_req; do P[$sc.$m]=$(paired "$sc-torii" "$sc-nginx" "$m"); done
  if [ "$sc" = resumed ]; then V[$sc]="-"; else V[$sc]=$(verdict "${R[$sc.rps]}" ">=" "$TARGET_RPS"); fi
  CLIENT_BOUND[$sc]=false
  awk -v a="${MED[$sc-nginx.proxy_cpu_pct]}" -v b="${MED[$sc-torii.proxy_cpu_pct]}" -v m="$BOTTLENECK_PCT" \
    'BEGIN { exit !(a != "nan" && b != "nan" && a + 0 < m + 0 && b + 0 < m + 0) }' && CLIENT_BOUND[$sc]=true
done
per_round() { # "median min max" -> text
  local m lo hi
  read -r m lo hi <<<"$1"
  [ "$m" = nan ] && { echo "-"; return; }
  echo "round by round: median $m, $lo..$hi"
}
ms() { awk -v u="$1" 'BEGIN { if (u == "nan") print "nan"; else printf "%.3f", u / 1000 }'; }
NOISY_RUNS=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "noisy") k = i; next } $k == "yes" { n++ } END { print n + 0 }' "$RUNS")
TOTAL_RUNS=$(($(wc -l <"$RUNS") - 1))
describe() { # SCENARIO
  case $1 in
  keepalive) echo "keep-alive HTTPS, $CONNECTIONS connections, listener with session tickets" ;;
  handshake) echo "a new connection and a full handshake per request (Connection: close, listener without session resumption)" ;;
  resumed) echo "a new connection per request (Connection: close) on the listener with session tickets: wrk resumes what it can" ;;
  esac
}

# The tables, in Markdown: on stdout and in tls-<timestamp>.md.
{
  echo "## TLS termination: Torii vs nginx, $BODY_BYTES-byte body ($(date -u '+%Y-%m-%d %H:%M UTC'), git \`$GIT_REV\`$([ "$GIT_DIRTY" = true ] && echo ' + uncommitted changes'))"
  echo
  echo "\`$COMMAND\`: $ROUNDS round(s) x $DURATION, wrk -t$THREADS -c$CONNECTIONS on core $LOAD_CPU (with the origin),"
  echo "each proxy with 1 worker on core $PROXY_CPU, proxying to the origin over keep-alive connections. Machine: $MACHINE."
  echo "Torii: ${TORII_BIN/#"$REPO/"/} ($TORII_VERSION, ${TORII_BUILD_TYPE:-build type unknown}, sha256 $TORII_SHA...); nginx $NGINX_VERSION ($NGINX_OPENSSL); wrk $WRK_VERSION; $OPENSSL_VERSION."
  echo "Certificate: $CERT_INFO (the same for both). Negotiated with OpenSSL's client defaults: nginx ${NEGOTIATED[nginx]}; torii ${NEGOTIATED[torii]}."
  echo "Medians over the clean runs ($(for n in "${NAMES[@]}"; do printf '%s: %s; ' "$n" "${CLEAN_COUNT[$n]}"; done)all runs for one with none)."
  echo "CPU = user+system of the proxy's process tree (master + worker), from /proc, per request; in the handshake scenario a request is a connection."
  echo "conns/req: connections the proxy accepted per request (its own count); full/resumed: Torii's handshakes (torii_tls_handshakes_total), summed over the measured runs."
  for sc in "${SCEN[@]}"; do
    echo
    echo "### $sc: $(describe "$sc")"
    echo
    printf '| %-6s | %10s | %9s | %9s | %10s | %8s | %8s | %11s | %9s | %9s | %9s | %12s |\n' proxy "req/s" "p50 ms" "p99 ms" \
      "CPU us/req" "user us" "sys us" "proxy CPU %" "wrk CPU %" "conns/req" "full" "resumed"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------- ------------ ----------- ----------- ------------ ---------- \
      ---------- ------------- ----------- ----------- ----------- --------------
    for s in "${SERVERS[@]}"; do
      n="$sc-$s"
      fsum="-"
      rsum="-"
      if [ "$s" = torii ]; then
        fsum=$(awk -F'\t' -v p="$n" 'NR > 1 && $1 == p && $(NF - 3) != "nan" { t += $(NF - 3) } END { printf "%.0f\n", t }' "$RUNS")
        rsum=$(awk -F'\t' -v p="$n" 'NR > 1 && $1 == p && $(NF - 2) != "nan" { t += $(NF - 2) } END { printf "%.0f\n", t }' "$RUNS")
      fi
      printf '| %-6s | %10.0f | %9s | %9s | %10s | %8s | %8s | %11s | %9s | %9s | %9s | %12s |\n' "$s" "${MED[$n.rps]}" \
        "$(ms "${MED[$n.p50_us]}")" "$(ms "${MED[$n.p99_us]}")" "${MED[$n.cpu_us_per_req]}" "${MED[$n.user_us_per_req]}" \
        "${MED[$n.sys_us_per_req]}" "${MED[$n.proxy_cpu_pct]}" "${MED[$n.wrk_cpu_pct]}" "${MED[$n.connections_per_req]}" "$fsum" "$rsum"
    done
    if [ "${CLIENT_BOUND[$sc]}" = true ]; then
      echo
      echo "Neither proxy used a full core here (proxy CPU < $BOTTLENECK_PCT %; core $LOAD_CPU, wrk's and the origin's, was busy" \
        "${MED[$sc-nginx.core_load_busy_pct]} % / ${MED[$sc-torii.core_load_busy_pct]} %): the client was the limit, so req/s and" \
        "latency say more about wrk than about the proxies. Compare CPU us/request."
    fi
  done
  echo
  printf '| %-32s | %6s | %-7s | %s\n' "Torii / nginx" value target verdict
  printf '|%s|%s|%s|%s\n' ---------------------------------- -------- --------- --------
  for sc in "${SCEN[@]}"; do
    printf '| %-32s | %6s | %-7s | %s\n' "$sc req/s" "${R[$sc.rps]}" "$([ "$sc" = resumed ] && echo - || echo ">= $TARGET_RPS")" \
      "${V[$sc]}; $(per_round "${P[$sc.rps]}")"
    printf '| %-32s | %6s | %-7s | %s\n' "$sc CPU us/request" "${R[$sc.cpu_us_per_req]}" "-" "$(per_round "${P[$sc.cpu_us_per_req]}")"
    printf '| %-32s | %6s | %-7s | %s\n' "$sc p99 latency" "${R[$sc.p99_us]}" "-" "-"
  done
  echo
  echo "p50/p99 are wrk's: from writing a request to its response, so in the handshake scenarios the handshake itself is not in them (it is in req/s and CPU)."
  echo "Session resumption (openssl s_client -sess_in): nginx ${RESUMES[nginx.tickets]} with tickets, ${RESUMES[nginx.notickets]} without; torii ${RESUMES[torii.tickets]} with tickets, ${RESUMES[torii.notickets]} without."
  echo "Machine noise: $NOISY_RUNS of $TOTAL_RUNS runs had other processes above $NOISY_PCT% of a core (marked noisy); load average $LOADAVG_START at start, $LOADAVG_END at end."
  if ((${#PROBLEMS[@]})); then
    echo
    echo "PROBLEMS:"
    for x in "${PROBLEMS[@]}"; do echo "- $x"; done
  fi
} >"$MARKDOWN"
echo
cat "$MARKDOWN"
echo
echo "Torii's TLS counters at the end ($WORK/metrics-torii.txt):"
while IFS= read -r line; do echo "  $line"; done <<<"$TORII_TLS_METRICS"
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
  printf '{\n  "benchmark": "tls",\n  "timestamp": %s,\n' "$(bench_json_str "$(date -Iseconds)")"
  printf '  "command": %s,\n  "machine": %s,\n' "$(bench_json_str "$COMMAND")" "$(bench_json_str "$MACHINE")"
  printf '  "loadavg_start": %s,\n  "loadavg_end": %s,\n' "$(bench_json_str "$LOADAVG_START")" "$(bench_json_str "$LOADAVG_END")"
  printf '  "git": {"rev": %s, "dirty": %s, "modified_files": %s},\n' "$(bench_json_str "$GIT_REV")" "$GIT_DIRTY" \
    "$(bench_json_str "$GIT_DIRTY_FILES")"
  printf '  "torii": {"bin": %s, "version": %s, "build_type": %s, "sha256_prefix": %s, "libssl": %s},\n' "$(bench_json_str "$TORII_BIN")" \
    "$(bench_json_str "$TORII_VERSION")" "$(bench_json_str "${TORII_BUILD_TYPE:-unknown}")" "$(bench_json_str "$TORII_SHA")" \
    "$(bench_json_str "${TORII_LIBSSL:-unknown}")"
  printf '  "nginx_version": %s,\n  "nginx_openssl": %s,\n  "wrk_version": %s,\n  "openssl_version": %s,\n' \
    "$(bench_json_str "$NGINX_VERSION")" "$(bench_json_str "$NGINX_OPENSSL")" "$(bench_json_str "$WRK_VERSION")" \
    "$(bench_json_str "$OPENSSL_VERSION")"
  printf '  "tls": {"certificate": %s, "certificate_sha256": %s, "protocols": "TLSv1.2 TLSv1.3", "tls13_suites": %s,\n' \
    "$(bench_json_str "$CERT_INFO")" "$(bench_json_str "$CERT_SHA256")" "$(bench_json_str "$TLS13_SUITES")"
  printf '    "negotiated": {"nginx": %s, "torii": %s}, "same_negotiation": %s,\n' \
    "$(bench_json_str "${NEGOTIATED[nginx]}")" "$(bench_json_str "${NEGOTIATED[torii]}")" "$TLS_SAME"
  printf '    "session_resumes": {"nginx": {"tickets": %s, "no_tickets": %s}, "torii": {"tickets": %s, "no_tickets": %s}}},\n' \
    "$([ "${RESUMES[nginx.tickets]}" = yes ] && echo true || echo false)" "$([ "${RESUMES[nginx.notickets]}" = yes ] && echo true || echo false)" \
    "$([ "${RESUMES[torii.tickets]}" = yes ] && echo true || echo false)" "$([ "${RESUMES[torii.notickets]}" = yes ] && echo true || echo false)"
  printf '  "servers": {"nginx": %s, "torii": %s},\n' \
    "$(bench_json_str "nginx, 1 worker, ssl_protocols TLSv1.2 TLSv1.3, ssl_conf_command Ciphersuites $TLS13_SUITES, ssl_prefer_server_ciphers on; listener A ssl_session_tickets on, listener B ssl_session_tickets off (session cache none); keepalive_requests 1000000, access_log off; upstream keepalive 64")" \
    "$(bench_json_str "torii, workers 1, TLS defaults; listener A session_tickets true, listener B session_tickets false; access log off, stats on; pool max_idle 128")"
  printf '  "scenarios": {'
  sep=""
  for sc in "${SCEN[@]}"; do
    printf '%s"%s": %s' "$sep" "$sc" "$(bench_json_str "$(describe "$sc")")"
    sep=", "
  done
  printf '},\n'
  printf '  "params": {"rounds": %d, "duration": "%s", "warmup": "%s", "threads": %d, "connections": %d, "body_bytes": %d, "proxy_cpu": %d, "load_cpu": %d, "clk_tck": %d},\n' \
    "$ROUNDS" "$DURATION" "$WARMUP" "$THREADS" "$CONNECTIONS" "$BODY_BYTES" "$PROXY_CPU" "$LOAD_CPU" "$CLK_TCK"
  printf '  "median": {\n'
  sep=""
  for sc in "${SCEN[@]}"; do
    printf '%s    "%s": {' "$sep" "$sc"
    sep2=""
    for s in "${SERVERS[@]}"; do
      printf '%s"%s": {' "$sep2" "$s"
      sep3=""
      for m in "${METRICS[@]}"; do
        printf '%s"%s": %s' "$sep3" "$m" "$(j "${MED[$sc-$s.$m]}")"
        sep3=", "
      done
      printf '}'
      sep2=", "
    done
    printf '}'
    sep=$',\n'
  done
  printf '\n  },\n'
  printf '  "ratio_torii_over_nginx": {'
  sep=""
  for sc in "${SCEN[@]}"; do
    printf '%s"%s": {"rps": %s, "p50": %s, "p99": %s, "cpu_us_per_req": %s}' "$sep" "$sc" "$(j "${R[$sc.rps]}")" \
      "$(j "${R[$sc.p50_us]}")" "$(j "${R[$sc.p99_us]}")" "$(j "${R[$sc.cpu_us_per_req]}")"
    sep=", "
  done
  printf '},\n  "ratio_torii_over_nginx_per_round": {'
  sep=""
  for sc in "${SCEN[@]}"; do
    printf '%s"%s": {"rps": %s, "cpu_us_per_req": %s}' "$sep" "$sc" "$(jr "${P[$sc.rps]}")" "$(jr "${P[$sc.cpu_us_per_req]}")"
    sep=", "
  done
  printf '},\n  "targets": {"rps_ratio_min": %s' "$TARGET_RPS"
  for sc in "${SCEN[@]}"; do [ "$sc" = resumed ] || printf ', "%s": "%s"' "$sc" "${V[$sc]}"; done
  printf '},\n  "client_bound": {'
  sep=""
  for sc in "${SCEN[@]}"; do
    printf '%s"%s": %s' "$sep" "$sc" "${CLIENT_BOUND[$sc]}"
    sep=", "
  done
  printf '},\n  "client_bound_below_proxy_cpu_pct": %s,\n' "$BOTTLENECK_PCT"
  printf '  "checks": {"torii_log_lines": %s, "nginx_error_log_lines": %s, "torii_tls_metrics": %s},\n' \
    "$TORII_LOG_LINES" "$NGINX_LOG_LINES" "$(bench_json_str "$TORII_TLS_METRICS")"
  printf '  "noisy_runs": %d,\n  "noisy_pct": %s,\n' "$NOISY_RUNS" "$NOISY_PCT"
  printf '  "median_over": {'
  sep=""
  for n in "${NAMES[@]}"; do
    printf '%s"%s": "%s"' "$sep" "$n" "$([ "${CLEAN_ONLY[$n]}" = 1 ] && echo "${CLEAN_COUNT[$n]} clean runs" || echo "all runs")"
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
