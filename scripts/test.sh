#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test:
#   1. unit tests (doctest) and integration tests (pytest, real torii binary,
#      real origins and clients) on the release build;
#   2. the same under ASan+UBSan;
#   3. the libFuzzer target on the request codec for a bounded time.
# Usage: scripts/test.sh            (FUZZ_SECONDS=60 by default; 0 skips nothing but runs 1 s)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"

scripts/install-deps.sh

step() { printf '\n=== %s\n' "$*"; }

step "release build"
scripts/build.sh release
step "lint (clang-format, clang-tidy)"
scripts/lint.sh
step "unit tests (release)"
build/tests/torii_unit_tests
step "integration tests (release)"
TORII_BIN="$root/build/gateway/torii" /usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider

step "ASan+UBSan build"
scripts/build.sh asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
step "unit tests (ASan+UBSan)"
build-asan/tests/torii_unit_tests
step "integration tests (ASan+UBSan)"
TORII_BIN="$root/build-asan/gateway/torii" TORII_SANITIZED=1 \
  /usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider

step "fuzz: request codec (${FUZZ_SECONDS}s, libFuzzer + ASan)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTORII_FUZZ=ON -DTORII_WERROR=OFF >/dev/null
ninja -C build-fuzz fuzz_request_codec
mkdir -p build-fuzz/corpus
build-fuzz/tests/fuzz_request_codec -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
  -artifact_prefix=build-fuzz/ \
  build-fuzz/corpus tests/fuzz/seeds
echo "fuzz: no crash in ${FUZZ_SECONDS}s"

step "container smoke (podman: docker/Dockerfile, docker/compose.yaml)"
scripts/docker-smoke.sh
