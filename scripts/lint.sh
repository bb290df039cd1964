#!/usr/bin/env bash
# Checks formatting (clang-format) and static analysis (clang-tidy, config in
# .clang-tidy) of the C++ sources. Needs a configured build/ (compile_commands.json).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t sources < <(git ls-files 'common/*.cpp' 'common/*.hpp' 'conf/*.cpp' 'conf/*.hpp' \
  'upstream/*.cpp' 'upstream/*.hpp' 'gateway/*.cpp' 'gateway/*.hpp' 'cache/*.cpp' 'cache/*.hpp' \
  'metrics/*.cpp' 'metrics/*.hpp' 'tests/*.cpp' 'tests/*.hpp')
echo "lint: clang-format on ${#sources[@]} files"
clang-format --dry-run --Werror "${sources[@]}"
mapfile -t units < <(printf '%s\n' "${sources[@]}" | grep -E '^(common|conf|upstream|gateway|cache|metrics)/.*\.cpp$')
echo "lint: clang-tidy on ${#units[@]} translation units"
out=$(clang-tidy -p build --quiet --extra-arg=-Wno-unknown-warning-option "${units[@]}" 2>/dev/null | grep -E 'warning:|error:' || true)
if [[ -n "$out" ]]; then
  echo "$out"
  echo "lint: clang-tidy found problems" >&2
  exit 1
fi
echo "lint: clean"
