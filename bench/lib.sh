# shellcheck shell=bash
# bench/lib.sh: shared helpers for the Torii benchmarks. Source it, do not run it:
#
#   source "$(dirname "$0")/lib.sh"
#   bench_install_traps            # stop everything we started on exit, Ctrl-C or error
#   bench_start origin 1 "$dir/origin.log" nginx -p "$dir" -c "$dir/origin.conf"
#   origin_pid=$BENCH_LAST_PID
#   ...
#
# What is here:
#   processes  bench_start, bench_stop, bench_alive, bench_install_traps,
#              bench_cleanup, bench_wait_port, bench_port_free, bench_pick_port
#   CPU        bench_tree_pids, bench_tree_cpu_ticks, bench_clk_tck,
#              bench_tree_cpu_split_ticks, bench_core_snapshot,
#              bench_core_pct, bench_children_cpu_s, bench_wait_quiet
#   wrk        bench_wrk, bench_wrk_parse, bench_wrk_field
#   runs       bench_measure_run (one measured wrk run, with CPU and checks),
#              bench_run_fields, BENCH_RUN_COLUMNS, bench_run_rounds
#   numbers    bench_median, bench_ratio, bench_calc
#   callgrind  bench_callgrind_worker_ir
#   misc       bench_log, bench_warn, bench_die, bench_require, bench_render,
#              bench_json_str, bench_machine_info
#
# Everything started with bench_start is recorded by PID and stopped by PID
# (its whole process tree: TERM, then KILL after a grace period). Nothing is
# ever killed by name. Needs bash 4+, coreutils, awk, procfs; taskset and wrk
# for the functions that use them.

# PIDs of the process-tree roots we started, in start order.
BENCH_PIDS=()
declare -A BENCH_NAMES=()
declare -A BENCH_STOP_SIG=()  # optional per-PID stop signal for bench_stop
BENCH_LAST_PID=""

bench_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_warn() { printf '[%s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() {
  printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2
  exit 1
}

# bench_require CMD...: fail unless every command is on PATH.
bench_require() {
  local c missing=()
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  ((${#missing[@]} == 0)) || bench_die "missing command(s): ${missing[*]}"
}

# bench_calc EXPR: floating-point arithmetic through awk, e.g. bench_calc '3/7*100'.
bench_calc() { awk "BEGIN { printf \"%.6g\n\", ($1) }"; }

# bench_median: median of the numbers on stdin (one per line); "nan" if none.
bench_median() {
  sort -g | awk 'NF { a[++n] = $1 }
    END {
      if (n == 0) { print "nan"; exit }
      if (n % 2) printf "%.6g\n", a[(n + 1) / 2]
      else printf "%.6g\n", (a[n / 2] + a[n / 2 + 1]) / 2
    }'
}

# bench_ratio A B: A/B with 3 decimals, "nan" if B is 0 or either is not a number.
bench_ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a !~ /^[-+0-9.eE]+$/ || b !~ /^[-+0-9.eE]+$/ || b + 0 == 0) { print "nan"; exit }
    printf "%.3f\n", a / b
  }'
}

# bench_render TEMPLATE OUT KEY=VALUE...: copy TEMPLATE to OUT replacing each
# @KEY@ with VALUE. Fails if a @WORD@ placeholder is left over.
bench_render() {
  local tmpl=$1 out=$2 kv key val
  shift 2
  [ -r "$tmpl" ] || bench_die "template not found: $tmpl"
  local text
  text=$(<"$tmpl")
  for kv in "$@"; do
    key=${kv%%=*}
    val=${kv#*=}
    text=${text//@"$key"@/"$val"}
  done
  if [[ $text =~ @[A-Z_]+@ ]]; then
    bench_die "unrendered placeholder ${BASH_REMATCH[0]} in $tmpl"
  fi
  printf '%s\n' "$text" >"$out"
}

# bench_json_str STRING: STRING as a JSON string literal.
bench_json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# ---------------------------------------------------------------- processes

# bench_start NAME CPULIST LOGFILE CMD...: start CMD in the background with
# stdout+stderr to LOGFILE, pinned to CPULIST with taskset (empty CPULIST = not
# pinned). The PID (the root of the process tree, as taskset execs CMD) is
# left in BENCH_LAST_PID and recorded for bench_cleanup.
bench_start() {
  local name=$1 cpus=$2 log=$3
  shift 3
  if [ -n "$cpus" ]; then
    taskset -c "$cpus" "$@" >"$log" 2>&1 </dev/null &
  else
    "$@" >"$log" 2>&1 </dev/null &
  fi
  BENCH_LAST_PID=$!
  BENCH_PIDS+=("$BENCH_LAST_PID")
  BENCH_NAMES[$BENCH_LAST_PID]=$name
}

# bench_alive PID: true if PID exists and is not a zombie.
bench_alive() {
  local st
  [ -r "/proc/$1/stat" ] || return 1
  st=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# bench_stop PID [GRACE_SECONDS [SIGNAL]]: stop the process tree rooted at PID:
# SIGNAL (default BENCH_STOP_SIG[PID], else TERM) to the root, which is
# expected to stop its children, then after GRACE seconds (default 5) SIGKILL
# to whatever is left of the tree as it was before.
bench_stop() {
  local root=$1 grace=${2:-5} p left i
  local sig=${3:-${BENCH_STOP_SIG[$root]:-TERM}}
  local -a tree
  mapfile -t tree < <(bench_tree_pids "$root")
  ((${#tree[@]})) || tree=("$root")
  kill -"$sig" "$root" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    left=0
    for p in "${tree[@]}"; do bench_alive "$p" && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for p in "${tree[@]}"; do
    if bench_alive "$p"; then
      bench_warn "pid $p (${BENCH_NAMES[$root]:-?}) still running after ${grace}s, sending SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  wait "$root" 2>/dev/null || true
  # forget it
  local -a keep=()
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$root" ] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}

# bench_cleanup: stop every process tree started with bench_start, newest
# first. Safe to call more than once.
bench_cleanup() {
  local i
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    bench_stop "${BENCH_PIDS[i]}" 5
  done
}

# bench_install_traps [EXTRA_FUNCTION]: run bench_cleanup (then EXTRA_FUNCTION,
# if given) on exit, and turn INT/TERM/HUP into an exit so the cleanup runs.
bench_install_traps() {
  BENCH_EXIT_HOOK=${1:-}
  trap '_bench_on_exit' EXIT
  trap 'bench_warn "interrupted"; exit 130' INT
  trap 'bench_warn "terminated"; exit 143' TERM HUP
}
_bench_on_exit() {
  local rc=$?
  trap - EXIT INT TERM HUP
  bench_cleanup
  if [ -n "${BENCH_EXIT_HOOK:-}" ]; then "$BENCH_EXIT_HOOK" "$rc" || true; fi
  exit "$rc"
}

# bench_port_free PORT: true if nothing listens on TCP PORT.
bench_port_free() {
  if command -v ss >/dev/null 2>&1; then
    ! ss -Htln "( sport = :$1 )" 2>/dev/null | grep -q .
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# bench_pick_port START [EXCLUDED...]: print the first free TCP port >= START
# that is not one of EXCLUDED.
bench_pick_port() {
  local p=$1 x skip
  shift
  for ((; p < 65535; p++)); do
    skip=0
    for x in "$@"; do [ "$x" = "$p" ] && skip=1; done
    ((skip)) && continue
    bench_port_free "$p" && { echo "$p"; return 0; }
  done
  return 1
}

# bench_wait_port HOST PORT TIMEOUT_S [PID]: wait until HOST:PORT accepts a TCP
# connection. Fails after TIMEOUT_S, or at once if PID (when given) has exited.
bench_wait_port() {
  local host=$1 port=$2 timeout=$3 pid=${4:-} i
  for ((i = 0; i < timeout * 20; i++)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    if [ -n "$pid" ] && ! bench_alive "$pid"; then return 1; fi
    sleep 0.05
  done
  return 1
}

# ---------------------------------------------------------------- CPU

bench_clk_tck() { getconf CLK_TCK; }

# _bench_proc_walk ROOT MODE: one pass over /proc/*/stat; MODE "pids" prints
# the PIDs of the tree rooted at ROOT (root first), MODE "ticks" prints the
# summed utime+stime+cutime+cstime of that tree in clock ticks, MODE "split"
# prints "USER SYSTEM": utime+cutime and stime+cstime, summed. cutime+cstime
# (children that were already reaped) keep the CPU of a worker that died and
# was respawned during a measurement inside the total.
_bench_proc_walk() {
  local root=$1 mode=$2
  # shellcheck disable=SC2046
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$root" -v mode="$mode" '
    {
      pid = $1
      rest = $0
      sub(/^.*\) /, "", rest)          # skip "pid (comm) ", comm may hold spaces
      n = split(rest, f, " ")
      if (n < 15) next
      # rest: 1 state, 2 ppid, ..., 12 utime, 13 stime, 14 cutime, 15 cstime
      cpu[pid] = f[12] + f[13] + f[14] + f[15]
      usr[pid] = f[12] + f[14]
      sys[pid] = f[13] + f[15]
      kids[f[2]] = kids[f[2]] " " pid
    }
    END {
      if (!(root in cpu)) { if (mode == "ticks") print 0; else if (mode == "split") print "0 0"; exit }
      q[n = 1] = root; seen[root] = 1; total = tu = ts = 0
      for (i = 1; i <= n; i++) {
        p = q[i]
        total += cpu[p]; tu += usr[p]; ts += sys[p]
        if (mode == "pids") print p
        m = split(kids[p], k, " ")
        for (j = 1; j <= m; j++) if (!(k[j] in seen)) { seen[k[j]] = 1; q[++n] = k[j] }
      }
      if (mode == "ticks") print total
      else if (mode == "split") printf "%d %d\n", tu, ts
    }'
}

# bench_tree_pids ROOT: ROOT and all its descendants, one PID a line.
bench_tree_pids() { _bench_proc_walk "$1" pids; }

# bench_tree_cpu_ticks ROOT: CPU time (user+system, clock ticks) of the
# process tree rooted at ROOT: master + workers.
bench_tree_cpu_ticks() { _bench_proc_walk "$1" ticks; }

# bench_core_snapshot: "cpuN busy total steal softirq" lines from /proc/stat
# (jiffies), for bench_core_pct. busy counts everything but idle and iowait,
# steal included (time the hypervisor gave to someone else).
bench_core_snapshot() {
  awk '/^cpu[0-9]/ { busy = $2 + $3 + $4 + $7 + $8 + $9; print $1, busy, busy + $5 + $6, $9, $8 }' /proc/stat
}

# bench_core_pct BEFORE AFTER CPU [busy|steal|softirq]: percentage of the time
# of core CPU (e.g. cpu0) spent busy (default), stolen by the hypervisor, or in
# softirq, between two bench_core_snapshot outputs.
bench_core_pct() {
  awk -v core="$3" -v what="${4:-busy}" -v before="$1" -v after="$2" 'BEGIN {
    col = (what == "steal") ? 4 : (what == "softirq") ? 5 : 2
    n = split(before, b, "\n"); for (i = 1; i <= n; i++) { split(b[i], f, " "); B[f[1]] = f[col]; BT[f[1]] = f[3] }
    n = split(after, a, "\n"); for (i = 1; i <= n; i++) { split(a[i], f, " "); A[f[1]] = f[col]; AT[f[1]] = f[3] }
    dt = AT[core] - BT[core]
    if (dt <= 0) { print "nan"; exit }
    printf "%.1f\n", 100 * (A[core] - B[core]) / dt
  }'
}
bench_core_busy_pct() { bench_core_pct "$1" "$2" "$3" busy; }

# bench_children_cpu_s SCRATCHFILE: set BENCH_CHILDREN_CPU_S to the user+system
# seconds of this shell's reaped children so far (bash `times`, second line).
# Call it directly, not in $(...): a subshell has its own, empty, count. The
# difference around a bench_wrk call is the CPU time wrk used.
bench_children_cpu_s() {
  times >"$1"
  # shellcheck disable=SC2034 # read by the caller
  BENCH_CHILDREN_CPU_S=$(awk 'NR == 2 {
      t = 0
      for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); t += a[1] * 60 + a[2] }
      printf "%.3f\n", t
    }' "$1")
}

# bench_wait_quiet MAX_PCT TIMEOUT_S: wait until the machine's CPUs together
# were busy less than MAX_PCT % (of one core) over one second, at most
# TIMEOUT_S seconds. Prints the last busy % seen; fails if still busy.
bench_wait_quiet() {
  local max=$1 timeout=$2 start=$SECONDS a b pct
  while :; do
    a=$(awk '/^cpu[0-9]/ { b += $2 + $3 + $4 + $7 + $8 + $9 } END { print b }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu[0-9]/ { b += $2 + $3 + $4 + $7 + $8 + $9 } END { print b }' /proc/stat)
    pct=$(awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f\n", 100 * (b - a) / hz }')
    if ((pct < max)); then echo "$pct"; return 0; fi
    if ((SECONDS - start >= timeout)); then echo "$pct"; return 1; fi
  done
}

# ---------------------------------------------------------------- wrk

# bench_wrk OUTFILE CPULIST WRK_ARGS...: run wrk (pinned to CPULIST unless
# empty) with its output in OUTFILE. wrk runs in the background and we wait
# for it, so Ctrl-C/TERM reach our traps at once; it is also bounded by
# `timeout` (its -d plus a margin, WRK_TIMEOUT_MARGIN seconds, default 30).
bench_wrk() {
  local out=$1 cpus=$2 a dur_s=60 rc=0
  shift 2
  for a in "$@"; do
    case $a in
    -d*) dur_s=$(_bench_duration_s "${a#-d}") ;;
    esac
  done
  local limit=$((dur_s + ${WRK_TIMEOUT_MARGIN:-30}))
  if [ -n "$cpus" ]; then
    timeout -k 5 "$limit" taskset -c "$cpus" wrk "$@" >"$out" 2>&1 </dev/null &
  else
    timeout -k 5 "$limit" wrk "$@" >"$out" 2>&1 </dev/null &
  fi
  local pid=$!
  BENCH_PIDS+=("$pid")
  BENCH_NAMES[$pid]=wrk
  wait "$pid" || rc=$?
  local -a keep=()
  for a in "${BENCH_PIDS[@]}"; do [ "$a" = "$pid" ] || keep+=("$a"); done
  BENCH_PIDS=("${keep[@]}")
  return "$rc"
}

# _bench_duration_s 10s|2m|500ms|10: whole seconds, rounded up.
_bench_duration_s() {
  awk -v d="$1" 'BEGIN {
    if (d ~ /ms$/) { v = substr(d, 1, length(d) - 2) / 1000 }
    else if (d ~ /s$/) { v = substr(d, 1, length(d) - 1) }
    else if (d ~ /m$/) { v = substr(d, 1, length(d) - 1) * 60 }
    else if (d ~ /h$/) { v = substr(d, 1, length(d) - 1) * 3600 }
    else v = d
    print (v == int(v)) ? int(v) : int(v) + 1
  }'
}

# bench_wrk_parse FILE: key=value lines from a `wrk --latency` output:
#   requests duration_s rps lat_avg_us p50_us p75_us p90_us p99_us
#   err_connect err_read err_write err_timeout non2xx3xx
# Latencies are in microseconds. Missing values are "nan" (errors: 0).
bench_wrk_parse() {
  awk '
    function us(v,   n) {
      n = v + 0
      if (v ~ /us$/) return n
      if (v ~ /ms$/) return n * 1000
      if (v ~ /s$/)  return n * 1000000
      if (v ~ /m$/)  return n * 60000000
      if (v ~ /h$/)  return n * 3600000000
      return "nan"
    }
    function secs(v,   n) {
      sub(/,$/, "", v); n = v + 0
      if (v ~ /ms$/) return n / 1000
      if (v ~ /s$/)  return n
      if (v ~ /m$/)  return n * 60
      if (v ~ /h$/)  return n * 3600
      return "nan"
    }
    BEGIN { req = dur = rps = avg = p50 = p75 = p90 = p99 = "nan"; ec = er = ew = et = non = 0 }
    $1 == "Latency" && NF >= 4 && !lat_done { avg = us($2); lat_done = 1 }
    $1 == "50%" { p50 = us($2) }
    $1 == "75%" { p75 = us($2) }
    $1 == "90%" { p90 = us($2) }
    $1 == "99%" { p99 = us($2) }
    / requests in / { req = $1; dur = secs($4) }
    /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ {
      for (i = 1; i <= NF; i++) {
        v = $(i + 1); sub(/,$/, "", v)
        if ($i == "connect") ec = v; else if ($i == "read") er = v
        else if ($i == "write") ew = v; else if ($i == "timeout") et = v
      }
    }
    /Non-2xx or 3xx responses:/ { non = $NF }
    END {
      printf "requests=%s\nduration_s=%s\nrps=%s\nlat_avg_us=%s\n", req, dur, rps, avg
      printf "p50_us=%s\np75_us=%s\np90_us=%s\np99_us=%s\n", p50, p75, p90, p99
      printf "err_connect=%s\nerr_read=%s\nerr_write=%s\nerr_timeout=%s\nnon2xx3xx=%s\n", ec, er, ew, et, non
    }' "$1"
}

# bench_wrk_field PARSED KEY: the value of KEY in a bench_wrk_parse output.
bench_wrk_field() {
  awk -F= -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "nan" }' <<<"$1"
}

# ---------------------------------------------------------------- callgrind

# bench_callgrind_worker_ir DIR MASTER_PID: the Ir total (user-space
# instructions) of the busiest process that valgrind --tool=callgrind wrote to
# DIR (as --callgrind-out-file=DIR/cg.%p) other than MASTER_PID: the worker.
bench_callgrind_worker_ir() {
  local dir=$1 master=$2 f best=0 v
  for f in "$dir"/cg.*; do
    [ -e "$f" ] || continue
    [ "${f##*/cg.}" = "$master" ] && continue
    v=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
    [ -n "$v" ] && ((v > best)) && best=$v
  done
  echo "$best"
}

# ---------------------------------------------------------------- machine

# bench_machine_info: one-line description of this machine.
bench_machine_info() {
  local model kernel mem
  model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
  kernel=$(uname -sr)
  mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
  printf '%s cores (%s), %s RAM, %s\n' "$(nproc)" "${model:-unknown CPU}" "${mem:-?}" "$kernel"
}

# ---------------------------------------------------------------- added for observability_bench.sh

# bench_tree_cpu_split_ticks ROOT: "USER SYSTEM" CPU time (clock ticks) of the
# process tree rooted at ROOT, all threads: utime+cutime and stime+cstime
# summed over ROOT and its descendants. Their sum is bench_tree_cpu_ticks.
bench_tree_cpu_split_ticks() { _bench_proc_walk "$1" split; }

# ---------------------------------------------------------------- measured runs
# The measured-run body shared by proxy_bench.sh, observability_bench.sh and
# cache_bench.sh: one wrk run against one server, with the CPU of its process
# tree, of the origin, of wrk and of everything else, and the checks.

# The columns bench_run_fields prints, tab-separated, in order (a runs.tsv
# holds "NAME<TAB>ROUND<TAB>" before them, and may add its own after them).
# shellcheck disable=SC2034 # read by the scripts
BENCH_RUN_COLUMNS=$'rps\trequests\tduration_s\tp50_us\tp99_us\tlat_avg_us\tcpu_s\tcpu_us_per_req\tproxy_cpu_pct\torigin_cpu_us_per_req\tcore_proxy_busy_pct\tcore_load_busy_pct\tsteal_pct\tsoftirq_proxy_core_pct\twrk_cpu_pct\tother_cpu_pct\tnoisy\tsocket_errors\tnon2xx3xx\ttree_changed'

# bench_measure_run NAME ROUND DURATION URL ROOT_PID [LOG_FILE]: one wrk run
# (`wrk -t$THREADS -c$CONNECTIONS -d DURATION --latency URL`, pinned to
# LOAD_CPU, raw output in $WORK/wrk/NAME-ROUND.txt) against the server whose
# process tree is rooted at ROOT_PID, measured as bench/README.md describes.
# First waits for a quiet machine (QUIET_MAX_PCT, QUIET_WAIT; 0 = no wait).
#
# Reads: WORK THREADS CONNECTIONS LOAD_CPU PROXY_CPU CLK_TCK NOISY_PCT
#   QUIET_MAX_PCT QUIET_WAIT, ORIGIN_PID (optional: the origin's tree, counted
#   apart from "other" CPU), BENCH_TREE_MAY_EXIT (optional: PIDs of the
#   server's tree that may exit during the run without it counting as a
#   change, e.g. nginx's cache loader).
# Sets: BR_RPS BR_REQ BR_DUR_S BR_P50 BR_P99 BR_AVG (us) BR_CPU_S BR_CPU_US
#   BR_USER_US BR_SYS_US (CPU us/request, all and split) BR_UTIL BR_ORIGIN_US
#   BR_CORE_P BR_CORE_L BR_STEAL BR_SIRQ BR_WRK_PCT BR_OTHER BR_NOISY BR_ERRS
#   BR_NON BR_CHANGED BR_WALL, LAST_NOISY (= BR_NOISY); on a problem (wrk
#   failed, socket errors, non-2xx/3xx, tree changed, server died) appends to
#   PROBLEMS, sets FAILED=1 and warns (LOG_FILE's tail if the server died).
# Returns 1 (nothing measured) if the server was dead before the run.
# shellcheck disable=SC2034 # BR_*, FAILED: read by the caller
bench_measure_run() {
  local name=$1 round=$2 dur=$3 url=$4 root=$5 log=${6:-}
  local out="$WORK/wrk/$name-$round.txt"
  if ! bench_alive "$root"; then
    PROBLEMS+=("$name died before round $round")
    FAILED=1
    return 1
  fi
  local tree_before tree_after u0 u1 t0 t1 o0=0 o1=0 c0 c1 w0 w1 e0 e1 q rc=0 p
  if ((QUIET_MAX_PCT > 0)); then
    if ! q=$(bench_wait_quiet "$QUIET_MAX_PCT" "$QUIET_WAIT"); then
      bench_warn "machine still busy (${q}% of a core) after ${QUIET_WAIT}s of waiting; running $name round $round anyway"
    fi
  fi
  tree_before=$(bench_tree_pids "$root" | sort | tr '\n' ' ')
  e0=$EPOCHREALTIME
  c0=$(bench_core_snapshot)
  u0=$(bench_tree_cpu_split_ticks "$root")
  [ -n "${ORIGIN_PID:-}" ] && o0=$(bench_tree_cpu_ticks "$ORIGIN_PID")
  bench_children_cpu_s "$WORK/.times"
  w0=$BENCH_CHILDREN_CPU_S
  bench_wrk "$out" "$LOAD_CPU" -t"$THREADS" -c"$CONNECTIONS" -d"$dur" --latency "$url" || rc=$?
  bench_children_cpu_s "$WORK/.times"
  w1=$BENCH_CHILDREN_CPU_S
  u1=$(bench_tree_cpu_split_ticks "$root")
  [ -n "${ORIGIN_PID:-}" ] && o1=$(bench_tree_cpu_ticks "$ORIGIN_PID")
  c1=$(bench_core_snapshot)
  e1=$EPOCHREALTIME
  tree_after=$(bench_tree_pids "$root" | sort | tr '\n' ' ')
  t0=$((${u0% *} + ${u0#* }))
  t1=$((${u1% *} + ${u1#* }))
  if ((rc != 0)); then
    PROBLEMS+=("$name round $round: wrk exited with status $rc")
    FAILED=1
    cat "$out" >&2
  fi
  local parsed
  parsed=$(bench_wrk_parse "$out")
  BR_REQ=$(bench_wrk_field "$parsed" requests)
  BR_DUR_S=$(bench_wrk_field "$parsed" duration_s)
  BR_RPS=$(bench_wrk_field "$parsed" rps)
  BR_P50=$(bench_wrk_field "$parsed" p50_us)
  BR_P99=$(bench_wrk_field "$parsed" p99_us)
  BR_AVG=$(bench_wrk_field "$parsed" lat_avg_us)
  BR_ERRS=$(awk -F= '/^err_/ { s += $2 } END { print s + 0 }' <<<"$parsed")
  BR_NON=$(bench_wrk_field "$parsed" non2xx3xx)
  BR_WALL=$(bench_calc "$e1 - $e0") # the measured window: a little longer than wrk's -d
  BR_CPU_S=$(bench_calc "($t1 - $t0) / $CLK_TCK")
  BR_CPU_US=$(awk -v d="$((t1 - t0))" -v hz="$CLK_TCK" -v n="$BR_REQ" 'BEGIN { if (n + 0 > 0) printf "%.2f\n", d * 1e6 / hz / n; else print "nan" }')
  read -r BR_USER_US BR_SYS_US < <(awk -v a="$u0" -v b="$u1" -v hz="$CLK_TCK" -v n="$BR_REQ" 'BEGIN {
      split(a, x, " "); split(b, y, " ")
      if (n + 0 > 0) printf "%.2f %.2f\n", (y[1] - x[1]) * 1e6 / hz / n, (y[2] - x[2]) * 1e6 / hz / n; else print "nan nan" }')
  if [ -n "${ORIGIN_PID:-}" ]; then
    BR_ORIGIN_US=$(awk -v d="$((o1 - o0))" -v hz="$CLK_TCK" -v n="$BR_REQ" 'BEGIN { if (n + 0 > 0) printf "%.2f\n", d * 1e6 / hz / n; else print "nan" }')
  else
    BR_ORIGIN_US=nan
  fi
  BR_UTIL=$(awk -v c="$BR_CPU_S" -v t="$BR_WALL" 'BEGIN { if (t + 0 > 0) printf "%.1f\n", 100 * c / t; else print "nan" }')
  BR_CORE_P=$(bench_core_busy_pct "$c0" "$c1" "cpu$PROXY_CPU")
  BR_CORE_L=$(bench_core_busy_pct "$c0" "$c1" "cpu$LOAD_CPU")
  BR_STEAL=$(bench_calc "($(bench_core_pct "$c0" "$c1" "cpu$PROXY_CPU" steal) + $(bench_core_pct "$c0" "$c1" "cpu$LOAD_CPU" steal)) / 2")
  BR_SIRQ=$(bench_core_pct "$c0" "$c1" "cpu$PROXY_CPU" softirq)
  BR_WRK_PCT=$(awk -v a="$w0" -v b="$w1" -v t="$BR_WALL" 'BEGIN { if (t + 0 > 0) printf "%.1f\n", 100 * (b - a) / t; else print "nan" }')
  # CPU of everything else: all cores' busy time less what the server, the
  # origin and wrk used. (Tick-based accounting charges softirq time to the
  # task it interrupted, so that is in "ours" already.)
  BR_OTHER=$(awk -v before="$c0" -v after="$c1" -v hz="$CLK_TCK" -v t="$BR_WALL" \
    -v ours="$(bench_calc "$BR_CPU_S + ($o1 - $o0) / $CLK_TCK + $w1 - $w0")" 'BEGIN {
      n = split(before, b, "\n"); for (i = 1; i <= n; i++) { split(b[i], f, " "); x -= f[2] }
      n = split(after, a, "\n"); for (i = 1; i <= n; i++) { split(a[i], f, " "); x += f[2] }
      if (t + 0 <= 0) { print "nan"; exit }
      v = 100 * (x / hz - ours) / t; if (v < 0) v = 0; printf "%.1f\n", v }')
  BR_NOISY=no
  awk -v o="$BR_OTHER" -v m="$NOISY_PCT" 'BEGIN { exit !(o != "nan" && o + 0 > m + 0) }' && BR_NOISY=yes
  LAST_NOISY=$BR_NOISY
  # Processes allowed to exit (BENCH_TREE_MAY_EXIT) are left out of both lists.
  for p in ${BENCH_TREE_MAY_EXIT:-}; do
    tree_before=${tree_before/#"$p "/}
    tree_before=${tree_before// "$p "/ }
    tree_after=${tree_after/#"$p "/}
    tree_after=${tree_after// "$p "/ }
  done
  BR_CHANGED=no
  [ "$tree_before" = "$tree_after" ] || BR_CHANGED=yes

  if [ "$BR_ERRS" != 0 ] || [ "$BR_NON" != 0 ]; then
    PROBLEMS+=("$name round $round: $BR_ERRS socket errors, $BR_NON non-2xx/3xx responses")
    FAILED=1
    bench_warn "$name round $round: wrk reported errors:"
    grep -E 'Socket errors|Non-2xx' "$out" >&2 || true
  fi
  if [ "$BR_CHANGED" = yes ]; then
    PROBLEMS+=("$name round $round: process tree changed ($tree_before-> $tree_after): a process died or was respawned")
    FAILED=1
    bench_warn "$name round $round: process tree changed: before [$tree_before] after [$tree_after]"
  fi
  if ! bench_alive "$root"; then
    PROBLEMS+=("$name died during round $round")
    FAILED=1
    bench_warn "$name DIED during round $round; last lines of its log:"
    [ -n "$log" ] && { tail -n 40 "$log" >&2 || true; }
  fi
  return 0
}

# bench_run_fields: the values of the last bench_measure_run, tab-separated,
# in the order of BENCH_RUN_COLUMNS (no newline).
bench_run_fields() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' \
    "$BR_RPS" "$BR_REQ" "$BR_DUR_S" "$BR_P50" "$BR_P99" "$BR_AVG" "$BR_CPU_S" "$BR_CPU_US" "$BR_UTIL" \
    "$BR_ORIGIN_US" "$BR_CORE_P" "$BR_CORE_L" "$BR_STEAL" "$BR_SIRQ" "$BR_WRK_PCT" "$BR_OTHER" "$BR_NOISY" \
    "$BR_ERRS" "$BR_NON" "$BR_CHANGED"
}

# bench_run_rounds RUN_FN ROUNDS DURATION NAME...: ROUNDS interleaved rounds;
# in each, `RUN_FN NAME ROUND DURATION` for every NAME in order. A run after
# which LAST_NOISY is "yes" is repeated, up to NOISY_RETRIES (default 0) times.
bench_run_rounds() {
  local fn=$1 rounds=$2 dur=$3 r name attempt
  shift 3
  for ((r = 1; r <= rounds; r++)); do
    for name in "$@"; do
      for ((attempt = 0; ; attempt++)); do
        LAST_NOISY=no
        "$fn" "$name" "$r" "$dur" || true
        if [ "$LAST_NOISY" != yes ] || ((attempt >= ${NOISY_RETRIES:-0})); then break; fi
        bench_log "round $r $name was noisy: running it again"
      done
    done
  done
}

# bench_json_runs_and_status RUNS_TSV: the end of a summary JSON object,
# printed after the caller's '"runs": [': one object per row of the TSV (the
# first column, noisy and tree_changed as strings, "nan" as null), the
# array's end, "problems" (from PROBLEMS), "status" (from FAILED), "workdir"
# (from WORK) and the closing brace.
bench_json_runs_and_status() {
  local sep x
  awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; next }
    {
      printf "%s    {", (NR > 2 ? ",\n" : "")
      for (i = 1; i <= NF; i++) {
        v = $i
        if (i == 1 || h[i] == "tree_changed" || h[i] == "noisy") v = "\"" v "\""
        else if (v == "nan") v = "null"
        printf "%s\"%s\": %s", (i > 1 ? ", " : ""), h[i], v
      }
      printf "}"
    }
    END { print "" }' "$1"
  printf '  ],\n  "problems": ['
  sep=""
  for x in "${PROBLEMS[@]}"; do
    printf '%s\n    %s' "$sep" "$(bench_json_str "$x")"
    sep=","
  done
  ((${#PROBLEMS[@]})) && printf '\n  '
  printf '],\n  "status": "%s",\n  "workdir": %s\n}\n' "$([ "$FAILED" = 0 ] && echo ok || echo errors)" "$(bench_json_str "$WORK")"
}

# Checks PROXY_CPU and LOAD_CPU against the machine's cores (sets NCPU);
# `what` names what runs on PROXY_CPU in the warning ("proxy", "servers").
bench_check_cores() {
  local what=$1
  NCPU=$(nproc)
  if ((PROXY_CPU >= NCPU || LOAD_CPU >= NCPU)); then
    bench_die "PROXY_CPU=$PROXY_CPU / LOAD_CPU=$LOAD_CPU need at least $((PROXY_CPU > LOAD_CPU ? PROXY_CPU + 1 : LOAD_CPU + 1)) cores, this machine has $NCPU"
  fi
  [ "$PROXY_CPU" != "$LOAD_CPU" ] || bench_warn "PROXY_CPU = LOAD_CPU: $what and load share one core"
}

# Without TORII_BIN: configures (once) and builds a Release torii in
# TORII_BUILD_DIR, incrementally, so the current tree is what is measured.
# Sets TORII_BIN and TORII_BUILD_TYPE.
bench_build_torii() {
  if [ -z "${TORII_BIN:-}" ]; then
    bench_require cmake
    mkdir -p "$TORII_BUILD_DIR"
    local build_log="$TORII_BUILD_DIR/bench-build.log"
    if [ ! -f "$TORII_BUILD_DIR/CMakeCache.txt" ]; then
      local gen=()
      command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
      bench_log "configuring a Release build in $TORII_BUILD_DIR"
      cmake -S "$REPO" -B "$TORII_BUILD_DIR" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DTORII_TESTS=OFF \
        >"$build_log" 2>&1 || { tail -n 30 "$build_log" >&2; bench_die "cmake failed (log: $build_log)"; }
    fi
    bench_log "building torii in $TORII_BUILD_DIR"
    cmake --build "$TORII_BUILD_DIR" --target torii -j "$NCPU" >>"$build_log" 2>&1 ||
      { tail -n 30 "$build_log" >&2; bench_die "build failed (log: $build_log)"; }
    TORII_BIN="$TORII_BUILD_DIR/gateway/torii"
  fi
  [ -x "$TORII_BIN" ] || bench_die "torii binary not found: $TORII_BIN"
  # shellcheck disable=SC2034 # read by the calling script
  TORII_BUILD_TYPE=$(awk -F= '/^CMAKE_BUILD_TYPE:/ { print $2 }' "$(dirname "$(dirname "$TORII_BIN")")/CMakeCache.txt" 2>/dev/null || true)
}

# The run parameters every benchmark takes, with their defaults (QUICK=1:
# one short round, for a smoke test). See any bench script's header.
bench_run_parameters() {
  if [ "${QUICK:-0}" = 1 ]; then
    ROUNDS=${ROUNDS:-1}
    DURATION=${DURATION:-3s}
    WARMUP=${WARMUP:-1s}
    QUIET_WAIT=${QUIET_WAIT:-10}
  else
    ROUNDS=${ROUNDS:-3}
    DURATION=${DURATION:-10s}
    WARMUP=${WARMUP:-2s}
  fi
  CONNECTIONS=${CONNECTIONS:-64}
  QUIET_MAX_PCT=${QUIET_MAX_PCT:-15}
  QUIET_WAIT=${QUIET_WAIT:-120}
  NOISY_PCT=${NOISY_PCT:-10}
  NOISY_RETRIES=${NOISY_RETRIES:-2}
  THREADS=${THREADS:-1}
}

bench_check_run_parameters() {
  if ! [[ $ROUNDS =~ ^[0-9]+$ ]] || ((ROUNDS < 1)); then bench_die "ROUNDS must be a positive integer"; fi
  if [ "${QUICK:-0}" != 1 ] && ((ROUNDS < 3)); then
    bench_die "ROUNDS must be >= 3 for a real measurement (QUICK=1 for a smoke test)"
  fi
  [[ $DURATION =~ ^[0-9]+[smh]$ ]] || bench_die "DURATION must look like 10s, 1m"
  [[ $WARMUP =~ ^[0-9]+[smh]$ ]] || bench_die "WARMUP must look like 2s"
}
