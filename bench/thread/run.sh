#!/bin/sh
# bench/thread/run.sh BUILD_DIR - time to safepoint (1, 2, 4, 8 threads) and
# the callgrind instruction count of ft_safepoint() with nothing pending.
# Use a release build: meson setup BUILD --buildtype=release
set -eu
build=${1:?usage: run.sh BUILD_DIR}
"$build/bench/thread/bench_safepoint" --runs 5 --stops 2000
n=1000000
out=$(mktemp)
valgrind --tool=callgrind --callgrind-out-file="$out" "$build/bench/thread/bench_safepoint_instr" $n >/dev/null 2>&1
callgrind_annotate "$out" 2>/dev/null | awk -v n=$n '
  /loop_with_safepoint/    { gsub(",", "", $1); with = $1 }
  /loop_without_safepoint/ { gsub(",", "", $1); without = $1 }
  END { printf "{\"bench\":\"thread_safepoint_instr\",\"iterations\":%d,\"ir_with\":%d,\"ir_without\":%d,\"instructions_per_safepoint\":%.2f}\n", n, with, without, (with - without) / n }'
rm -f "$out"
