#!/usr/bin/env bash
# Container smoke test (issue 8), with podman, offline, as root on Debian 12:
#
#   1. scripts/podman-setup.sh: podman's config, and the base image
#      debian:bookworm-slim made with debootstrap (reused when present);
#   2. builds docker/Dockerfile (unchanged) and the "fast" example service;
#   3. runs both on a podman network and checks that Torii proxies, serves
#      /metrics, passes its HEALTHCHECK, reloads on `podman kill -s HUP` (and
#      on `docker kill -s HUP` through `podman system service` when a docker
#      CLI is installed), refuses a bad config on reload, and drains
#      in-flight requests on `podman stop` and exits 0;
#   4. docker/compose.yaml: `docker-compose config -q`, then `up` of every
#      service that can run offline (all but Grafana, whose image would have
#      to be pulled) through `podman system service`, checks both example
#      apps through Torii, Torii's HUP through the Docker API and Prometheus'
#      scrape of Torii, then `down`.
#
# Every wait is bounded; containers, networks and the podman service this
# script starts are removed on exit, whatever happens. Images are kept, so a
# second run reuses the layer cache.
#
# Usage: scripts/docker-smoke.sh
#   TORII_SMOKE_COMPOSE=0   skip step 4
#   TORII_SMOKE_PORT=18480  first of the loopback ports used (5 in a row)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

prefix=torii-smoke
net=$prefix-net
port_base="${TORII_SMOKE_PORT:-18480}"
http_port=$port_base
admin_port=$((port_base + 1))
compose_http_port=$((port_base + 2))
compose_prom_port=$((port_base + 3))
compose_admin_port=$((port_base + 4))
torii_image=localhost/torii:smoke
fast_image=localhost/torii-example-fast:smoke
compose_cmd=(docker-compose -p "$prefix" -f docker/compose.yaml)

log() { printf '\n[docker-smoke %3ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() {
  printf '\n[docker-smoke] FAILED: %s\n' "$*" >&2
  exit 1
}
ok() { printf '  ok: %s\n' "$*"; }

# wait_until SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.5 s.
wait_until() {
  local limit=$1 what=$2
  shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "timed out after ${limit}s waiting for: $what"
    sleep 0.5
  done
}

# A curl that never hangs.
c() { curl -sS --max-time 10 "$@"; }

[[ $(id -u) -eq 0 ]] || fail "run as root"
for tool in podman curl; do
  command -v "$tool" >/dev/null || fail "$tool missing: run scripts/install-deps.sh"
done

compose() { timeout 600 "${compose_cmd[@]}" "$@"; }

tmp=$(mktemp -d /tmp/$prefix.XXXXXX)
service_pid=""
compose_up=0
cleanup() {
  local rc=$?
  set +e
  if [[ $rc -ne 0 ]]; then
    # Show what the containers said before they are removed.
    for name in $prefix $prefix-fast; do
      if podman container exists "$name" 2>/dev/null; then
        echo "--- last log lines of $name" >&2
        podman logs --tail 40 "$name" >&2 2>&1
      fi
    done
    if ((compose_up)); then
      echo "--- docker-compose logs (tail)" >&2
      compose logs --no-color --tail 40 >&2 2>&1
    fi
  fi
  if ((compose_up)); then
    timeout 120 "${compose_cmd[@]}" down --volumes --remove-orphans >/dev/null 2>&1
  fi
  podman rm -f -t 0 $prefix $prefix-fast >/dev/null 2>&1
  podman network rm -f $net >/dev/null 2>&1
  if [[ -n $service_pid ]]; then
    kill "$service_pid" 2>/dev/null
    wait "$service_pid" 2>/dev/null
    rm -rf "/run/$prefix"
  fi
  rm -rf "$tmp"
  echo "[docker-smoke] total time: $((SECONDS - started))s (exit $rc)"
}
trap cleanup EXIT
# Any other command that fails (set -e) says which one it was.
trap 'printf "\n[docker-smoke] FAILED: line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

# Something already listening on a port we publish would fail `podman run`
# with a less obvious error.
for port in $http_port $admin_port $compose_http_port $compose_prom_port $compose_admin_port; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "127.0.0.1:$port is in use: free it or set TORII_SMOKE_PORT"
  fi
done

# ---- 1. podman and the base image --------------------------------------------
log "podman setup and base image"
eval "$(scripts/podman-setup.sh)"
export CONTAINERS_CONF

# Leftovers of an interrupted run would hold the names and ports.
podman rm -f -t 0 $prefix $prefix-fast >/dev/null 2>&1 || true
podman network rm -f $net >/dev/null 2>&1 || true

# ---- 2. images ---------------------------------------------------------------
# --format docker: HEALTHCHECK exists only in the Docker image format.
# --pull=never: no registry; the base image is local.
log "building $torii_image from docker/Dockerfile"
timeout 1200 podman build --format docker --pull=never -f docker/Dockerfile -t $torii_image . \
  >"$tmp/build-torii.log" 2>&1 || {
  tail -40 "$tmp/build-torii.log" >&2
  fail "podman build of docker/Dockerfile"
}
ok "image built ($(podman image inspect --format '{{.Size}}' $torii_image) bytes)"
[[ $(podman image inspect --format '{{.Config.User}}' $torii_image) == torii:torii ]] ||
  fail "the image does not run as the torii user"
[[ $(podman image inspect --format '{{.Config.StopSignal}}' $torii_image) == SIGTERM ]] ||
  fail "the image's STOPSIGNAL is not SIGTERM"
log "building $fast_image from docker/examples/fast"
timeout 600 podman build --format docker --pull=never -t $fast_image docker/examples/fast \
  >"$tmp/build-fast.log" 2>&1 || {
  tail -40 "$tmp/build-fast.log" >&2
  fail "podman build of docker/examples/fast"
}

# ---- 3. one gateway in front of the fast service -----------------------------
log "running the fast service and Torii on network $net"
podman network create $net >/dev/null

# The config folder is mounted, not the file: a file replaced by rename
# (editors, `mv`, config management) would stay the old inode in a file mount.
conf_dir="$tmp/conf"
mkdir -p "$conf_dir"
chmod 755 "$tmp" "$conf_dir" # the image runs as uid 10001
write_config() { # write_config NAME ROUTES_JSON: atomic replace, as a deploy tool would
  cat >"$conf_dir/.torii.json.new" <<EOF
{
  "workers": 2,
  "listeners": [{"address": "0.0.0.0:8080"}],
  "admin": {"address": "0.0.0.0:9100"},
  "timeouts": {"drain": "8s"},
  "upstreams": {"fast": {"servers": ["fast:8080"], "connect_timeout": "2s"}},
  "routes": $2
}
EOF
  chmod 644 "$conf_dir/.torii.json.new"
  mv "$conf_dir/.torii.json.new" "$conf_dir/torii.json"
  echo "  config now: $1"
}
# Without systemd, podman 4.3 logs "unable to get systemd connection to add
# healthchecks" on every start of an image with a HEALTHCHECK: harmless, the
# check itself is run by hand below.
podman run -d --name $prefix-fast --network $net --network-alias fast $fast_image >/dev/null
write_config v1 '[{"name": "fast", "match": {"path_prefix": "/fast/"}, "upstream": "fast"}]'

wait_until 30 "the fast service to answer" \
  podman exec $prefix-fast python3 -c \
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/fast/healthz', timeout=1)"
podman run -d --name $prefix --network $net \
  -p "127.0.0.1:$http_port:8080" -p "127.0.0.1:$admin_port:9100" \
  -v "$conf_dir:/etc/torii:ro" $torii_image >/dev/null

wait_until 30 "Torii /readyz" c -f "http://127.0.0.1:$admin_port/readyz"
ok "ready"

body=$(c -f "http://127.0.0.1:$http_port/fast/?via=torii") || fail "request through Torii failed"
grep -q '"service":"fast"' <<<"$body" || fail "unexpected answer through Torii: $body"
grep -q '"request_id":"[^"]' <<<"$body" || fail "Torii did not add X-Request-Id: $body"
ok "proxies: $body"
[[ $(c -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/not-routed") == 404 ]] ||
  fail "an unrouted path should get Torii's 404"

metrics=$(c -f "http://127.0.0.1:$admin_port/metrics") || fail "GET /metrics failed"
grep -q '^torii_build_info{' <<<"$metrics" || fail "/metrics has no torii_build_info"
grep -q '^torii_requests_total{.*route="fast"' <<<"$metrics" ||
  fail "/metrics does not count the request on route fast"
ok "/metrics: $(grep -c '^torii_' <<<"$metrics") torii_ samples"

[[ $(podman exec $prefix id -u) == 10001 ]] || fail "the gateway does not run as uid 10001"
podman exec $prefix cat /proc/1/cmdline | tr '\0' ' ' | grep -q '^/usr/bin/tini -- ' ||
  fail "PID 1 is not tini"
ok "runs as uid 10001 under tini"

# HEALTHCHECK: run the image's check now rather than wait for its interval
# (its timer needs systemd, which this machine may not run).
podman healthcheck run $prefix >/dev/null || fail "podman healthcheck run: unhealthy"
health=$(podman inspect --format '{{.State.Health.Status}}' $prefix 2>/dev/null ||
  podman inspect --format '{{.State.Healthcheck.Status}}' $prefix)
[[ $health == healthy ]] || fail "health status is '$health', want healthy"
ok "HEALTHCHECK: $health"

reloads() { # reloads RESULT: torii_config_reloads_total{result=RESULT}
  c -f "http://127.0.0.1:$admin_port/metrics" |
    awk -v r="result=\"$1\"" 'index($0, "torii_config_reloads_total{") == 1 && index($0, r) {print $2+0}'
}
reloads_above() { # reloads_above RESULT N: the count went past N
  local n
  n=$(reloads "$1")
  [[ -n $n ]] && ((n > $2))
}
metric_has() { c -f "http://127.0.0.1:$admin_port/metrics" | grep -q "$1"; }
routed_to() { # routed_to ROUTE PATH: a request on PATH is counted on ROUTE
  c -f "http://127.0.0.1:$http_port$2" >/dev/null && metric_has "^torii_requests_total{.*route=\"$1\""
}

log "reload: podman kill -s HUP with a new route"
base_ok=$(reloads success)
[[ -n $base_ok ]] || fail "/metrics has no torii_config_reloads_total"
write_config v2 '[{"name": "fast", "match": {"path_prefix": "/fast/"}, "upstream": "fast"},
  {"name": "fast-items-v2", "match": {"path_prefix": "/fast/items/"}, "upstream": "fast"}]'
podman kill -s HUP $prefix >/dev/null
wait_until 30 "reload v2 to succeed" reloads_above success "$base_ok"
wait_until 10 "route fast-items-v2 to serve" routed_to fast-items-v2 /fast/items/7
ok "new route fast-items-v2 live after HUP"

log "reload of a bad config is refused, the running one kept"
base_fail=$(reloads failure)
printf '{"listeners": [], "upstreams": {}, "routes": []}\n' >"$conf_dir/.bad"
chmod 644 "$conf_dir/.bad"
cp "$conf_dir/torii.json" "$tmp/good.json"
mv "$conf_dir/.bad" "$conf_dir/torii.json"
podman kill -s HUP $prefix >/dev/null
wait_until 15 "the bad reload to be counted" reloads_above failure "$base_fail"
c -f "http://127.0.0.1:$http_port/fast/items/8" >/dev/null || fail "traffic failed after a refused reload"
podman logs $prefix 2>&1 | grep -q 'configuration reload failed, keeping the running configuration' ||
  fail "no 'reload failed' log line"
cp "$tmp/good.json" "$conf_dir/.good" && mv "$conf_dir/.good" "$conf_dir/torii.json"
ok "bad config refused, still serving"

# The Docker API of `podman system service`: what `docker` and docker-compose talk to.
sock_dir=/run/$prefix
mkdir -p $sock_dir
sock=$sock_dir/podman.sock
rm -f $sock
podman system service --time=0 "unix://$sock" >"$tmp/podman-service.log" 2>&1 &
service_pid=$!
wait_until 20 "the podman API socket" curl -sf --max-time 2 --unix-socket $sock http://d/_ping
export DOCKER_HOST="unix://$sock"

if command -v docker >/dev/null; then
  log "reload: docker kill -s HUP through the podman API"
  base_ok=$(reloads success)
  write_config v3 '[{"name": "fast", "match": {"path_prefix": "/fast/"}, "upstream": "fast"},
    {"name": "fast-echo-v3", "match": {"path_prefix": "/fast/echo"}, "upstream": "fast"}]'
  timeout 30 docker kill -s HUP $prefix >/dev/null || fail "docker kill -s HUP"
  wait_until 30 "reload v3 to succeed" reloads_above success "$base_ok"
  wait_until 10 "route fast-echo-v3 to serve" routed_to fast-echo-v3 /fast/echo
  ok "new route fast-echo-v3 live after docker kill -s HUP"
else
  log "no docker CLI installed: docker kill is exercised through the same API by docker-compose below"
fi

log "drain: podman stop with a request in flight"
c -o "$tmp/slow.out" -w '%{http_code}' "http://127.0.0.1:$http_port/fast/slow?ms=3000" \
  >"$tmp/slow.code" 2>"$tmp/slow.err" &
slow_pid=$!
sleep 0.5 # let the request reach the origin
stop_start=$SECONDS
timeout 60 podman stop -t 30 $prefix >/dev/null || fail "podman stop"
stop_took=$((SECONDS - stop_start))
wait "$slow_pid" || fail "the in-flight request failed during the drain: $(cat "$tmp/slow.err")"
[[ $(cat "$tmp/slow.code") == 200 ]] || fail "in-flight request got $(cat "$tmp/slow.code")"
grep -q '"slept_ms":3000' "$tmp/slow.out" || fail "in-flight request: $(cat "$tmp/slow.out")"
exit_code=$(podman inspect --format '{{.State.ExitCode}}' $prefix)
[[ $exit_code == 0 ]] || fail "container exit code $exit_code after stop, want 0"
logs=$(podman logs $prefix 2>&1)
grep -q 'graceful shutdown: draining workers' <<<"$logs" || fail "no drain in the logs"
grep -q 'master exiting' <<<"$logs" || fail "the master did not exit by itself"
((stop_took < 13)) || fail "stop took ${stop_took}s, more than timeouts.drain + 5 s"
ok "in-flight request completed (200), exit code 0, stopped in ${stop_took}s"
podman rm -f -t 0 $prefix $prefix-fast >/dev/null
podman network rm -f $net >/dev/null

# ---- 4. the compose stack ----------------------------------------------------
if [[ "${TORII_SMOKE_COMPOSE:-1}" == 0 ]]; then
  log "compose: skipped (TORII_SMOKE_COMPOSE=0)"
  exit 0
fi
command -v docker-compose >/dev/null || fail "docker-compose missing: run scripts/install-deps.sh"
export TORII_HTTP_PORT=$compose_http_port TORII_PROMETHEUS_PORT=$compose_prom_port
export TORII_ADMIN_PORT=$compose_admin_port
export TORII_BIND=127.0.0.1 COMPOSE_HTTP_TIMEOUT=300

log "compose: config -q"
compose config -q || fail "docker-compose config -q"
ok "docker/compose.yaml is valid"

if [[ ! -f docker/examples/django/exampleapp/wsgi.py ]]; then
  fail "docker/examples/django is incomplete (no exampleapp/wsgi.py)"
fi
# Grafana's image comes from a registry: not started here (docs/DOCKER.md).
offline_services=(torii django fast prometheus)
log "compose: up ${offline_services[*]} (Grafana needs a registry: left out)"
# Torii and fast: the images just tested above, under the names compose.yaml
# gives them (one build of Torii per run, not two). The others are built by
# compose itself, through the Docker API.
podman tag $torii_image localhost/torii:latest
podman tag $fast_image localhost/torii-example-fast:latest
compose build django prometheus >"$tmp/compose-build.log" 2>&1 || {
  tail -40 "$tmp/compose-build.log" >&2
  fail "docker-compose build django prometheus"
}
compose_up=1
compose up -d --no-build "${offline_services[@]}" >"$tmp/compose-up.log" 2>&1 || {
  tail -40 "$tmp/compose-up.log" >&2
  fail "docker-compose up"
}
# Through the published admin port: a `compose exec` would leave the API's
# exec session monitor (conmon) running for 5 minutes after the stack is gone.
wait_until 90 "Torii of the compose stack to be ready" \
  c -f "http://127.0.0.1:$compose_admin_port/readyz"
wait_until 60 "the Django app through Torii" c -f "http://127.0.0.1:$compose_http_port/healthz"
body=$(c -f "http://127.0.0.1:$compose_http_port/") || fail "GET / (Django) through Torii"
ok "Django via Torii: $(head -c 200 <<<"$body")"
body=$(c -f "http://127.0.0.1:$compose_http_port/fast/") || fail "GET /fast/ through Torii"
grep -q '"service":"fast"' <<<"$body" || fail "unexpected /fast/ answer: $body"
ok "fast via Torii: $body"

# `docker kill -s HUP` as the Docker API does it: compose's kill is that call.
log "compose: kill -s HUP torii through the Docker API"
prom() { c -f "http://127.0.0.1:$compose_prom_port/api/v1/query" --data-urlencode "query=$1"; }
prom_value() { prom "$1" | grep -o '"value":\[[^]]*\]' | sed 's/.*,"\([^"]*\)"\]/\1/'; }
compose kill -s HUP torii >/dev/null || fail "docker-compose kill -s HUP torii"
reloaded() { compose logs --no-color torii 2>/dev/null | grep -q 'msg="configuration reloaded"'; }
wait_until 30 "Torii to log the reload" reloaded
c -f "http://127.0.0.1:$compose_http_port/fast/" >/dev/null || fail "traffic after the compose HUP"
ok "reloaded"

log "compose: Prometheus scrapes Torii"
scraped() { [[ $(prom_value 'up{job="torii"}') == 1 ]] && [[ -n $(prom_value 'sum(torii_requests_total)') ]]; }
wait_until 60 "Prometheus to scrape torii (up{job=\"torii\"} == 1)" scraped
ok "up{job=\"torii\"} = 1, sum(torii_requests_total) = $(prom_value 'sum(torii_requests_total)')"

log "compose: down"
compose stop -t 20 torii >/dev/null
compose logs --no-color torii 2>/dev/null | grep -q 'master exiting' || fail "compose stop: Torii did not drain and exit"
compose down --volumes --remove-orphans >/dev/null 2>&1 || fail "docker-compose down"
compose_up=0
ok "stack removed"

log "all container checks passed"
