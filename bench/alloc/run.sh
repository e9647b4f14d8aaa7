#!/bin/sh
# bench/alloc/run.sh - issue 2's allocator comparison: runs bench_alloc once
# per allocator, workload and repetition (ftrt linked in; glibc as is;
# mimalloc, jemalloc and tcmalloc through LD_PRELOAD), prints a table of
# median ops/s and peak RSS as ratios to mimalloc, then callgrind instruction
# counts of one malloc(32)+free pair. JSON lines go to $OUT. ops/cpu-s
# (operations per second of process CPU time) is steadier than ops/s when
# other processes share the cores.
#
# Usage: bench/alloc/run.sh [BUILD_DIR] (a release build; default
#        /work/build-mem-rel). REPS=5 SECONDS_PER_RUN=2 OUT=bench-alloc.jsonl
set -eu
BUILD=${1:-/work/build-mem-rel}
REPS=${REPS:-5}
SECS=${SECONDS_PER_RUN:-2}
OUT=${OUT:-bench-alloc.jsonl}
BIN=$BUILD/bench/alloc/bench_alloc
FAST=$BUILD/bench/alloc/bench_fastpath
LIBDIR=/usr/lib/x86_64-linux-gnu
[ -x "$BIN" ] || { echo "run.sh: $BIN not built (meson compile -C $BUILD bench_alloc bench_fastpath)" >&2; exit 1; }

ALLOCS="ftrt glibc mimalloc jemalloc tcmalloc"
preload_of() {
    case $1 in
        mimalloc) echo $LIBDIR/libmimalloc.so.2 ;;
        jemalloc) echo $LIBDIR/libjemalloc.so.2 ;;
        tcmalloc) echo $LIBDIR/libtcmalloc_minimal.so.4 ;;
        *) echo "" ;;
    esac
}

run_one() { # alloc workload -> JSON line on stdout
    a=$1; w=$2; pre=$(preload_of "$a")
    if [ "$a" = ftrt ]; then
        "$BIN" --alloc=ftrt --workload="$w" --seconds="$SECS" | grep '^{"bench":"alloc","alloc"'
    else
        env ${pre:+LD_PRELOAD=$pre} "$BIN" --alloc=system --name="$a" --workload="$w" --seconds="$SECS" \
            | grep '^{"bench":"alloc","alloc"'
    fi
}

: > "$OUT"
"$BIN" --alloc=ftrt --workload=churn --seconds=0.01 | grep '"kind":"machine"' >> "$OUT"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), build $(basename "$BUILD")"
echo "# larson and prodcons use 2 threads (the machine has $(nproc) cores); medians of $REPS runs of ${SECS}s"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes share the cores: compare medians)"
# Allocators interleaved within each repetition, so that drifting machine load
# affects them alike.
r=0
while [ $r -lt "$REPS" ]; do
    for w in churn prodcons larson rss; do
        for a in $ALLOCS; do
            run_one "$a" "$w" >> "$OUT"
        done
    done
    r=$((r + 1))
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# Table: medians per (workload, alloc), ratios to mimalloc.
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"workload"' in l]
def med(w, a, key):
    v = [r[key] for r in rows if r["workload"] == w and r["alloc"] == a]
    return statistics.median(v) if v else float("nan")
allocs = ["ftrt", "glibc", "mimalloc", "jemalloc", "tcmalloc"]
print("%-9s %-9s %14s %8s %14s %8s %12s %8s" % ("workload", "alloc", "ops/s", "x mi", "ops/cpu-s", "x mi",
                                               "peak RSS KiB", "x mi"))
for w in ["churn", "prodcons", "larson"]:
    mo, mc, mr = (med(w, "mimalloc", k) for k in ("ops_per_sec", "ops_per_cpu_sec", "peak_rss_kib"))
    for a in allocs:
        o, c, r = (med(w, a, k) for k in ("ops_per_sec", "ops_per_cpu_sec", "peak_rss_kib"))
        print("%-9s %-9s %14.0f %8.2f %14.0f %8.2f %12.0f %8.2f" % (w, a, o, o / mo, c, c / mc, r, r / mr))
print("%-9s %-9s %12s %12s %12s %10s" % ("rss", "alloc", "before KiB", "peak KiB", "after KiB", "goal met"))
for a in allocs:
    b, p, f = med("rss", a, "rss_before_kib"), med("rss", a, "rss_peak_kib"), med("rss", a, "rss_after_kib")
    print("%-9s %-9s %12.0f %12.0f %12.0f %10s" % ("rss", a, b, p, f, "yes" if f <= 1.2 * b + 8192 else "no"))
PY

# Callgrind: instructions of one malloc(32)+free pair (N and 2N pairs, the
# difference divided by N removes start-up costs).
if command -v valgrind >/dev/null 2>&1; then
    N=1000000
    for a in ftrt glibc mimalloc jemalloc tcmalloc; do
        pre=$(preload_of "$a"); mode=system; [ "$a" = ftrt ] && mode=ftrt
        c1=$(env ${pre:+LD_PRELOAD=$pre} valgrind --tool=callgrind --callgrind-out-file=/dev/null "$FAST" --alloc=$mode $N 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
        c2=$(env ${pre:+LD_PRELOAD=$pre} valgrind --tool=callgrind --callgrind-out-file=/dev/null "$FAST" --alloc=$mode $((2 * N)) 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
        per=$(python3 -c "print(round(($c2 - $c1) / $N, 1))")
        echo "callgrind $a: $per instructions per malloc(32)+free pair (loop overhead included)"
        echo "{\"bench\":\"alloc\",\"alloc\":\"$a\",\"workload\":\"fastpath_callgrind\",\"instructions_per_pair\":$per}" >> "$OUT"
    done
fi
echo "# JSON lines written to $OUT"
