#!/bin/sh
# bench/gc/run.sh - the gc benchmarks in one invocation: collector pauses,
# then binary-trees on ftrt, Boehm GC and malloc/free, with time and peak RSS
# as ratios to malloc/free. Never asserts on time.
#
#   bench/gc/run.sh BUILD_DIR [DEPTH...]      (default depths: 16 18)
# BUILD_DIR should be a release build: meson setup BUILD --buildtype=release
# Each binary-trees run is repeated RUNS times (default 3); medians are used.
set -eu
build=${1:?usage: run.sh BUILD_DIR [DEPTH...]}
shift
depths=${*:-16 18}
runs=${RUNS:-3}
bin="$build/bench/gc"

echo "# gc benchmarks: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# build dir: $build (each program prints its build type)"
echo "# note: 2 worker threads in binary-trees; on a 2-core machine that is not oversubscribed"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other processes compete for the cores when > 0)"

"$bin/bench_gc_pause" ${PAUSE_ARGS:-}

median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

for depth in $depths; do
    # ftrt-nogc: the same ftrt program with automatic collection off
    # (FTRT_GC=0), to separate the collector's cost from counting's.
    for impl in malloc boehm ftrt ftrtnogc; do
        exe="$bin/bintrees_${impl%nogc}"
        envset=""
        [ "$impl" = ftrtnogc ] && envset="FTRT_GC=0"
        if [ ! -x "$exe" ]; then
            echo "# $impl: not built (missing dependency)"; continue
        fi
        : > "/tmp/bintrees.$$.$impl"
        i=0
        while [ $i -lt "$runs" ]; do
            env $envset "$exe" "$depth" | tee -a "/tmp/bintrees.$$.$impl.log" | grep '^{"bench":"bintrees"' >> "/tmp/bintrees.$$.$impl"
            i=$((i + 1))
        done
        t=$(sed 's/.*"seconds":\([0-9.]*\).*/\1/' "/tmp/bintrees.$$.$impl" | median)
        c=$(sed 's/.*"cpu_seconds":\([0-9.]*\).*/\1/' "/tmp/bintrees.$$.$impl" | median)
        r=$(sed 's/.*"peak_rss_kib":\([0-9]*\).*/\1/' "/tmp/bintrees.$$.$impl" | median)
        eval "time_$impl=$t; cpu_$impl=$c; rss_$impl=$r"
        grep '^ftrt pauses' "/tmp/bintrees.$$.$impl.log" | tail -1 || true
        rm -f "/tmp/bintrees.$$.$impl" "/tmp/bintrees.$$.$impl.log"
        echo "bintrees depth $depth $impl: median $t s wall, $c s CPU, peak RSS $r KiB ($runs runs)"
    done
    for impl in boehm ftrt ftrtnogc; do
        eval "t=\${time_$impl:-}; c=\${cpu_$impl:-}; r=\${rss_$impl:-}"
        [ -n "$t" ] || continue
        awk -v d="$depth" -v i="$impl" -v t="$t" -v c="$c" -v r="$r" -v tm="$time_malloc" -v cm="$cpu_malloc" -v rm="$rss_malloc" 'BEGIN {
            printf "bintrees depth %s %s vs malloc: time x%.2f, CPU x%.2f, peak RSS x%.2f\n", d, i, t / tm, c / cm, r / rm;
            printf "{\"bench\":\"bintrees_ratio\",\"depth\":%s,\"impl\":\"%s\",\"time_ratio\":%.3f,\"cpu_ratio\":%.3f,\"rss_ratio\":%.3f}\n", d, i, t / tm, c / cm, r / rm }'
    done
    unset time_boehm time_ftrt time_ftrtnogc cpu_boehm cpu_ftrt cpu_ftrtnogc rss_boehm rss_ftrt rss_ftrtnogc
done
