#!/usr/bin/env bash
# test.sh - the whole test suite: the unit tests and a short stress pass in a
# debug build (debug_level=2) and again under ThreadSanitizer. Fails if
# either fails. Installs missing Debian packages (when root) first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ensure_packages gcc libc6-dev pkg-config meson ninja-build liburcu-dev libck-dev libcmocka-dev

start=$(date +%s)
echo "== debug build (debug_level=2) =="
setup_build build/debug --buildtype=debug -Ddebug_level=2 -Dbench=false
meson compile -C build/debug
meson test -C build/debug --print-errorlogs --num-processes 2

echo "== ThreadSanitizer build =="
setup_build build/tsan --buildtype=debug -Ddebug_level=1 -Db_sanitize=thread -Db_lundef=false \
    -Dbench=false
meson compile -C build/tsan
# halt_on_error: the first report fails the test instead of scrolling past.
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
    meson test -C build/tsan --print-errorlogs --num-processes 2 --timeout-multiplier 3

echo "== all tests passed in $(( $(date +%s) - start )) s (debug + ThreadSanitizer) =="
