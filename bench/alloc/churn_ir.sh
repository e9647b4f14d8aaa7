#!/bin/sh
# bench/alloc/churn_ir.sh - callgrind instructions per churn operation (one
# free + one malloc of 16..512 B, loop and random numbers included) for ftrt
# and the LD_PRELOADed allocators named, from the difference between runs of
# 2 M and 4 M operations (bench_alloc runs 2e7 * --seconds churn operations,
# a fixed count, so the totals are deterministic and start-up cancels out).
#
# Usage: bench/alloc/churn_ir.sh [BUILD_DIR] [ALLOCS] (a release build;
#        default /work/build-mem-rel; ALLOCS default "ftrt mimalloc")
set -eu
BUILD=${1:-/work/build-mem-rel}
ALLOCS=${2:-"ftrt mimalloc"}
BIN=$BUILD/bench/alloc/bench_alloc
LIBDIR=/usr/lib/x86_64-linux-gnu
[ -x "$BIN" ] || { echo "churn_ir.sh: $BIN not built (meson compile -C $BUILD bench_alloc)" >&2; exit 1; }
command -v valgrind >/dev/null 2>&1 || { echo "churn_ir.sh: valgrind not found" >&2; exit 1; }

count() { # alloc seconds -> total instructions
    case $1 in
        ftrt) valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" --alloc=ftrt --workload=churn --seconds="$2" 2>&1 ;;
        glibc) valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" --alloc=system --workload=churn --seconds="$2" 2>&1 ;;
        mimalloc) env LD_PRELOAD=$LIBDIR/libmimalloc.so.2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" --alloc=system --workload=churn --seconds="$2" 2>&1 ;;
        jemalloc) env LD_PRELOAD=$LIBDIR/libjemalloc.so.2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" --alloc=system --workload=churn --seconds="$2" 2>&1 ;;
        tcmalloc) env LD_PRELOAD=$LIBDIR/libtcmalloc_minimal.so.4 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" --alloc=system --workload=churn --seconds="$2" 2>&1 ;;
        *) echo "churn_ir.sh: unknown allocator $1" >&2; exit 1 ;;
    esac | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -n 1
}

for a in $ALLOCS; do
    c1=$(count "$a" 0.1)
    c2=$(count "$a" 0.2)
    per=$(python3 -c "print(round(($c2 - $c1) / 2e6, 1))")
    echo "callgrind churn $a: $per instructions per free+malloc operation ($c1 for 2 M ops, $c2 for 4 M)"
done
