#!/usr/bin/env bash
# Installs every Debian package Torii needs to build, run and test.
# Usage: scripts/install-deps.sh [--runtime-only]
set -euo pipefail

build_pkgs=(
  cmake ninja-build g++ pkg-config
  libuv1-dev node-llhttp libssl-dev nlohmann-json3-dev prometheus-cpp-dev doctest-dev
)
test_pkgs=(
  python3 python3-aiohttp python3-pytest python3-requests python3-cryptography curl
  clang libclang-rt-14-dev     # libFuzzer + sanitizers for the fuzz target
  clang-format clang-tidy      # scripts/lint.sh
  nginx-light wrk              # benchmarks
  openssl testssl.sh           # TLS fixtures and the TLS scan test
  prometheus                   # promtool and a real Prometheus for the metrics tests
)
# Container image, compose stack and their smoke test (issue 8).
docker_pkgs=(
  podman runc iptables          # builds and runs the images (root, runc; iptables for -p port publishing)
  containernetworking-plugins golang-github-containernetworking-plugin-dnsname  # networks with DNS by name
  debootstrap                   # the offline base image debian:bookworm-slim (scripts/podman-setup.sh)
  docker-compose                # docker/compose.yaml, against `podman system service`
)
# Example apps behind the gateway and dashboard checks (issue 8).
example_pkgs=(
  python3-django gunicorn      # the Django example app under gunicorn (tests/integration/test_django.py)
)

pkgs=("${build_pkgs[@]}" python3 python3-aiohttp curl)
if [[ "${1:-}" != "--runtime-only" ]]; then
  pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}" "${docker_pkgs[@]}" "${example_pkgs[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
