#!/usr/bin/env bash
# Installs, builds and runs Torii on the shipped default config
# (conf/torii.json, port 8080) in front of the bundled demo origin (port 9001).
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --runtime-only
scripts/build.sh release

/usr/bin/python3 tests/origin/origin.py --host 127.0.0.1 --port 9001 --name demo >/dev/null &
origin_pid=$!
trap 'kill "$origin_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fsS -o /dev/null http://127.0.0.1:9001/ 2>/dev/null && break
  sleep 0.1
done
echo "demo origin on 127.0.0.1:9001 (pid $origin_pid); torii on 127.0.0.1:8080"
build/gateway/torii -c conf/torii.json &
torii_pid=$!
trap 'kill -TERM "$torii_pid" 2>/dev/null || true; wait "$torii_pid" 2>/dev/null || true; kill "$origin_pid" 2>/dev/null || true' EXIT INT TERM
wait "$torii_pid"
